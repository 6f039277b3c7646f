package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/internal/broker"
)

// registry keeps the scenario bindings in the compacted topic cascade.scenarios (one
// partition; key = scenario, value = JSON binding, empty value = deleted). It caches what it
// has read and, on each call, reads only the records appended since, up to the end offset:
// no consumer group is involved.
type registry struct {
	b *Broker

	mu    sync.Mutex
	ready bool  // the topic exists
	next  int64 // offset after the last record applied to state
	state map[string]broker.Binding
}

// Registry returns the scenario registry kept in the compacted topic cascade.scenarios.
func (b *Broker) Registry() broker.Registry { return b.reg }

// refresh makes sure the topic exists and applies the records appended since the last call.
// It must be called with r.mu held.
func (r *registry) refresh(ctx context.Context) error {
	if r.b.isClosed() {
		return broker.ErrClosed
	}
	if !r.ready {
		cfg := []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
		if _, err := r.b.ensureTopics(ctx, []string{RegistryTopic}, 1, 0, cfg); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		r.ready = true
	}
	p := tp{RegistryTopic, 0}
	first, end, err := r.b.bounds(ctx, []tp{p})
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if r.next < first[p] {
		// Compaction or retention removed records we had not read: read it all again.
		r.state, r.next = map[string]broker.Binding{}, first[p]
	}
	for r.next < end[p] {
		resp, err := r.b.client.Fetch(ctx, &kafka.FetchRequest{
			Topic: RegistryTopic, Partition: 0, Offset: r.next, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: r.b.opts.MaxWait,
		})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if errors.Is(err, kafka.RequestTimedOut) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return wrap(fmt.Errorf("registry: read at %d: %w", r.next, err))
		}
		got := 0
		for {
			rec, err := resp.Records.ReadRecord()
			if err != nil {
				break
			}
			if rec.Offset < r.next {
				continue
			}
			key, _ := kafka.ReadAll(rec.Key)
			val, err := kafka.ReadAll(rec.Value)
			if err != nil {
				return wrap(fmt.Errorf("registry: read record %d: %w", rec.Offset, err))
			}
			r.next = rec.Offset + 1
			got++
			if len(val) == 0 {
				delete(r.state, string(key))
				continue
			}
			var bd broker.Binding
			if err := json.Unmarshal(val, &bd); err != nil {
				r.b.log.Warn().Err(err).Str("scenario", string(key)).Int64("offset", rec.Offset).Msg("undecodable scenario binding skipped")
				continue
			}
			r.state[string(key)] = bd
		}
		if got == 0 {
			if resp.LogStartOffset > r.next {
				r.next = resp.LogStartOffset
				continue
			}
			if resp.HighWatermark >= end[p] {
				break // the rest is compacted away
			}
		}
	}
	return nil
}

func (r *registry) write(ctx context.Context, scenario string, val []byte) error {
	err := r.b.w.WriteMessages(ctx, kafka.Message{Topic: RegistryTopic, Key: []byte(scenario), Value: val})
	if err != nil {
		return wrap(fmt.Errorf("registry: write %s: %w", scenario, err))
	}
	return nil
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
