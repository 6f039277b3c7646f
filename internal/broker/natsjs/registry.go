package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
)

// RegistryBucket is the KV bucket holding scenario bindings.
const RegistryBucket = "cascade_scenarios"

type registry struct{ b *Broker }

// Registry returns the KV-backed scenario registry.
func (b *Broker) Registry() broker.Registry { return registry{b} }

func (r registry) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	return r.b.keyValue(ctx, &r.b.kv, registryConfig(1))
}

// keyValue returns the bucket cfg names, creating it with cfg when it does not exist, and
// caches it in *cache; an existing bucket keeps the replicas its owners gave it.
func (b *Broker) keyValue(ctx context.Context, cache *jetstream.KeyValue, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	b.mu.Lock()
	kv := *cache
	b.mu.Unlock()
	if kv != nil {
		return kv, nil
	}
	kv, err := b.js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateKeyValue(ctx, cfg)
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = b.js.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, wrap(fmt.Errorf("%s bucket: %w", cfg.Bucket, err))
	}
	b.mu.Lock()
	*cache = kv
	b.mu.Unlock()
	return kv, nil
}

func registryConfig(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      RegistryBucket,
		Description: "cascade scenario -> coefficient set",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// registryReplicas creates the registry bucket with n replicas, or raises an existing
// bucket's to n if it has fewer (a scenario kept on n replicas is no safer than its
// binding); it never lowers them.
func (b *Broker) registryReplicas(ctx context.Context, n int) error {
	kv, err := b.keyValue(ctx, &b.kv, registryConfig(n))
	if err != nil {
		return b.replicasError(n, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return wrap(fmt.Errorf("registry bucket: %w", err))
	}
	js, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || js.StreamInfo().Config.Replicas >= n {
		return nil
	}
	if _, err := b.js.UpdateKeyValue(ctx, registryConfig(n)); err != nil {
		return b.replicasError(n, wrap(fmt.Errorf("registry bucket replicas %d: %w", n, err)))
	}
	return nil
}

// Create is the bucket's create-if-absent; when the key exists it returns what it holds.
func (r registry) Create(ctx context.Context, b broker.Binding) (broker.Binding, bool, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return broker.Binding{}, false, err
	}
	val, err := json.Marshal(b)
	if err != nil {
		return broker.Binding{}, false, fmt.Errorf("encode binding: %w", err)
	}
	if _, err := kv.Create(ctx, b.Scenario, val); err == nil {
		return b, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return broker.Binding{}, false, wrap(fmt.Errorf("create %s: %w", b.Scenario, err))
	}
	have, err := r.Get(ctx, b.Scenario)
	if err != nil {
		return broker.Binding{}, false, err
	}
	return have, false, nil
}

// Get reads the scenario's key.
func (r registry) Get(ctx context.Context, scenario string) (broker.Binding, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return broker.Binding{}, err
	}
	e, err := kv.Get(ctx, scenario)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return broker.Binding{}, fmt.Errorf("scenario %s: %w", scenario, broker.ErrNotFound)
		}
		return broker.Binding{}, wrap(fmt.Errorf("get %s: %w", scenario, err))
	}
	var b broker.Binding
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		return broker.Binding{}, fmt.Errorf("decode binding %s: %w", scenario, err)
	}
	return b, nil
}

// List reads every key, sorted.
func (r registry) List(ctx context.Context) ([]broker.Binding, error) {
	kv, err := r.bucket(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, wrap(fmt.Errorf("list scenarios: %w", err))
	}
	var names []string
	for k := range keys.Keys() {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]broker.Binding, 0, len(names))
	for _, n := range names {
		b, err := r.Get(ctx, n)
		if errors.Is(err, broker.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Put writes the scenario's key whatever it holds.
func (r registry) Put(ctx context.Context, b broker.Binding) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	val, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode binding: %w", err)
	}
	if _, err := kv.Put(ctx, b.Scenario, val); err != nil {
		return wrap(fmt.Errorf("put %s: %w", b.Scenario, err))
	}
	return nil
}

// Delete purges the key.
func (r registry) Delete(ctx context.Context, scenario string) error {
	kv, err := r.bucket(ctx)
	if err != nil {
		return err
	}
	if err := kv.Purge(ctx, scenario); err != nil {
		return wrap(fmt.Errorf("delete %s: %w", scenario, err))
	}
	return nil
}
