package consumers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
)

// Serve runs the given layers for every scenario in the registry, each with its own
// coefficient set, picks up scenarios registered later (polling every `every`) and stops the
// layers of removed ones. It returns when ctx ends and every layer has drained.
func (r *Router) Serve(ctx context.Context, layers []event.Layer, every time.Duration) error {
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
			for _, l := range layers {
				r.count(r.serving, b.Scenario, 1)
				wg.Go(func() {
					defer r.count(r.serving, b.Scenario, -1)
					r.keep(sctx, b.Scenario, l, coef)
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

// keep runs a layer until ctx ends, reopening its consumer with back-off when it is lost.
func (r *Router) keep(ctx context.Context, scenario string, l event.Layer, coef *coefficients.Loaded) {
	log := r.log.With().Str("scenario", scenario).Str("layer", string(l)).Logger()
	err := r.retry(ctx, log, "layer", func(ctx context.Context) error {
		err := r.Layer(ctx, scenario, l, coef)
		if err != nil && r.removed(ctx, scenario) {
			return backoff.Permanent(errRemoved)
		}
		return err
	})
	if errors.Is(err, errRemoved) {
		log.Info().Msg("scenario removed; layer stopped")
	}
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
