package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/layercake/cascade/internal/broker"
)

// registry keeps the scenario bindings in the compacted topic cascade.scenarios (one
// partition; key = scenario, value = JSON binding, empty value = deleted). It caches what it
// has read and, on each call, reads only the records appended since, up to the end offset:
// no consumer group is involved.
type registry struct {
	mu    sync.Mutex
	log   *compacted
	state map[string]broker.Binding
}

func newRegistry(b *Broker) *registry {
	r := &registry{state: map[string]broker.Binding{}}
	r.log = &compacted{b: b, topic: RegistryTopic, reset: func() { r.state = map[string]broker.Binding{} }, apply: func(key string, val []byte, offset int64) {
		if len(val) == 0 {
			delete(r.state, key)
			return
		}
		var bd broker.Binding
		if err := json.Unmarshal(val, &bd); err != nil {
			b.log.Warn().Err(err).Str("scenario", key).Int64("offset", offset).Msg("undecodable scenario binding skipped")
			return
		}
		r.state[key] = bd
	}}
	return r
}

// Registry returns the scenario registry kept in the compacted topic cascade.scenarios.
func (b *Broker) Registry() broker.Registry { return b.reg }

// refresh applies the records appended since the last call; it must be called with r.mu held.
func (r *registry) refresh(ctx context.Context) error { return r.log.refresh(ctx) }

func (r *registry) write(ctx context.Context, scenario string, val []byte) error {
	return r.log.write(ctx, scenario, val)
}

// Create writes b when the scenario is not bound yet and returns it with true; otherwise
// it returns the stored binding with false.
//
// It reads, writes, then reads again: two processes creating the same new scenario at the
// same moment may both write, and the later record wins once compacted. Kafka offers no
// compare-and-set to close that race; the read after the write tells the loser (false,
// with the winner's binding), as cascade binds a scenario from one command at a time.
func (r *registry) Create(ctx context.Context, b broker.Binding) (broker.Binding, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return broker.Binding{}, false, err
	}
	if have, ok := r.state[b.Scenario]; ok {
		return have, false, nil
	}
	val, err := json.Marshal(b)
	if err != nil {
		return broker.Binding{}, false, fmt.Errorf("encode binding: %w", err)
	}
	if err := r.write(ctx, b.Scenario, val); err != nil {
		return broker.Binding{}, false, err
	}
	if err := r.refresh(ctx); err != nil {
		return broker.Binding{}, false, err
	}
	if have, ok := r.state[b.Scenario]; ok {
		if stored, err := json.Marshal(have); err == nil && !bytes.Equal(stored, val) {
			return have, false, nil
		}
	}
	return b, true, nil
}

// Get returns a scenario's binding or an error matching broker.ErrNotFound.
func (r *registry) Get(ctx context.Context, scenario string) (broker.Binding, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return broker.Binding{}, err
	}
	b, ok := r.state[scenario]
	if !ok {
		return broker.Binding{}, fmt.Errorf("scenario %s: %w", scenario, broker.ErrNotFound)
	}
	return b, nil
}

// List returns every binding, sorted by scenario.
func (r *registry) List(ctx context.Context) ([]broker.Binding, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return nil, err
	}
	out := make([]broker.Binding, 0, len(r.state))
	for _, b := range r.state {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Scenario < out[j].Scenario })
	return out, nil
}

// Put writes b as the scenario's binding, whatever was stored.
func (r *registry) Put(ctx context.Context, b broker.Binding) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	val, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode binding: %w", err)
	}
	if err := r.write(ctx, b.Scenario, val); err != nil {
		return err
	}
	return r.refresh(ctx)
}

// Delete writes the scenario's tombstone; deleting an unknown scenario does nothing.
func (r *registry) Delete(ctx context.Context, scenario string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(ctx); err != nil {
		return err
	}
	if _, ok := r.state[scenario]; !ok {
		return nil
	}
	if err := r.write(ctx, scenario, nil); err != nil {
		return err
	}
	if err := r.refresh(ctx); err != nil && !errors.Is(err, broker.ErrUnavailable) {
		return err
	}
	return nil
}
