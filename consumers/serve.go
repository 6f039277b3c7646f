package consumers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// Stages says how Serve groups layers into stages (Options.Stages).
type Stages string

// The ways of grouping layers.
const (
	// PerLayer runs each layer as a one-layer stage: consumers cascade-<s>-<layer>.
	PerLayer Stages = "per-layer"
	// Chained runs each contiguous run of the layers given as one stage: consumer
	// cascade-<s>-<first>-<last>, cascade-<s>-application-energy for all five.
	Chained Stages = "chained"
)

// ParseStages reads the --stages flag: "chained" or "per-layer".
func ParseStages(s string) (Stages, error) {
	switch Stages(s) {
	case PerLayer, Chained:
		return Stages(s), nil
	}
	return "", fmt.Errorf("%w: --stages %q: want %s or %s", event.ErrInvalid, s, Chained, PerLayer)
}

// Group is layers as the stages of mode: one per layer (PerLayer, ""), or one per run of
// layers adjacent in event.ConsumerLayers (Chained); layers are taken in pipeline order.
func Group(layers []event.Layer, mode Stages) []event.Stage {
	var in []event.Layer
	for _, l := range event.ConsumerLayers {
		if slices.Contains(layers, l) {
			in = append(in, l)
		}
	}
	var out []event.Stage
	for i, l := range in {
		if mode == Chained && i > 0 && slices.Index(event.ConsumerLayers, l) == slices.Index(event.ConsumerLayers, in[i-1])+1 {
			out[len(out)-1].Last = l
			continue
		}
		out = append(out, event.LayerStage(l))
	}
	return out
}

// Serve runs the given layers, grouped into stages by Options.Stages (Group), as
// ServeStages does.
func (r *Router) Serve(ctx context.Context, layers []event.Layer, every time.Duration) error {
	return r.ServeStages(ctx, Group(layers, r.opts.Stages), every)
}

// ServeStages runs the given stages for every scenario in the registry, each with its own
// coefficient set, picks up scenarios registered later (polling every `every`) and stops the
// stages of removed ones. It returns nil when ctx ends and every stage has drained, and an
// error matching ErrOverlap, once everything has stopped, when a stage refused to start
// beside another stage's consumer (Stage); stages that overlap each other are refused at
// once.
func (r *Router) ServeStages(ctx context.Context, stages []event.Stage, every time.Duration) error {
	if err := event.Tiling(stages); err != nil {
		return fmt.Errorf("%w: %w", ErrOverlap, err)
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	type running struct {
		version string
		cancel  context.CancelFunc
	}
	var wg sync.WaitGroup
	active := map[string]running{}
	defer func() {
		for _, a := range active {
			a.cancel()
		}
		wg.Wait()
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		bindings, err := r.b.Registry().List(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("scenario registry unreadable; retrying")
		}
		seen := map[string]bool{}
		for _, b := range bindings {
			seen[b.Scenario] = true
			if a, ok := active[b.Scenario]; ok && a.version == b.CoefVersion {
				continue
			} else if ok {
				a.cancel()
			}
			coef, err := coefficients.Parse(b.Document)
			if err != nil {
				r.log.Error().Err(err).Str("scenario", b.Scenario).Msg("scenario's coefficients are invalid; not serving it")
				continue
			}
			sctx, cancel := context.WithCancel(ctx)
			active[b.Scenario] = running{version: b.CoefVersion, cancel: cancel}
			for what, f := range r.opts.Followers {
				wg.Go(func() { r.follow(sctx, what, b.Scenario, f) })
			}
			for _, st := range stages {
				r.count(r.serving, b.Scenario, 1)
				wg.Go(func() {
					defer r.count(r.serving, b.Scenario, -1)
					if err := r.keep(sctx, b.Scenario, st, coef); err != nil {
						stop(err)
					}
				})
			}
		}
		for s, a := range active {
			if !seen[s] && err == nil {
				a.cancel()
				delete(active, s)
			}
		}
		select {
		case <-ctx.Done():
			for _, a := range active {
				a.cancel()
			}
			wg.Wait()
			if err := context.Cause(ctx); errors.Is(err, ErrOverlap) {
				return err
			}
			return nil
		case <-t.C:
		}
	}
}

// BindScenario is what the owner of a scenario does: it creates the scenario's storage with
// cfg or updates it to cfg (before any layer of a new binding can start), then registers
// scenario with coef by broker.Bind's rule (same set: no-op; another: an error matching
// broker.ErrConflict) and records cfg in the binding.
func BindScenario(ctx context.Context, b broker.Broker, scenario string, coef *coefficients.Loaded, cfg broker.ScenarioConfig) error {
	if err := b.EnsureScenario(ctx, scenario, cfg); err != nil {
		return err
	}
	have, err := broker.Bind(ctx, b.Registry(), broker.Binding{
		Scenario: scenario, CoefVersion: coef.CoefVersion, Document: coef.Canonical, Created: time.Now().UTC(), Config: cfg,
	})
	if err != nil || have.Config == cfg {
		return err
	}
	have.Config = cfg
	return b.Registry().Put(ctx, have)
}

// keep runs a stage until ctx ends, reopening its consumer with back-off when it is lost;
// it returns the error of a stage refused at its start for overlapping another (ErrOverlap).
// A stage refused when it reopens its consumer was retired by a take-over: it stops alone.
func (r *Router) keep(ctx context.Context, scenario string, st event.Stage, coef *coefficients.Loaded) error {
	log := r.log.With().Str("scenario", scenario).Str("stage", st.String()).Logger()
	runs := 0
	err := r.retry(ctx, log, "stage", func(ctx context.Context) error {
		runs++
		err := r.Stage(ctx, scenario, st, coef)
		switch {
		case errors.Is(err, ErrOverlap):
			return backoff.Permanent(err)
		case err != nil && r.removed(ctx, scenario):
			return backoff.Permanent(errRemoved)
		}
		return err
	})
	switch {
	case errors.Is(err, ErrOverlap) && runs > 1:
		log.Warn().Err(err).Msg("stage retired: another stage took its consumer over; stop this process once its other stages are retired too")
	case errors.Is(err, ErrOverlap):
		log.Error().Err(err).Msg("stage refused")
		return err
	case errors.Is(err, errRemoved):
		log.Info().Msg("scenario removed; stage stopped")
	}
	return nil
}

// follow runs f (what names it in the log) until ctx ends, restarting it when it stops.
func (r *Router) follow(ctx context.Context, what, scenario string, f Follower) {
	for ctx.Err() == nil {
		if err := f(ctx, scenario); err != nil && ctx.Err() == nil {
			r.log.Warn().Err(err).Str("scenario", scenario).Msg(what + " stopped; restarting")
			select {
			case <-ctx.Done():
			case <-time.After(r.opts.FollowerRestart):
			}
		}
	}
}
