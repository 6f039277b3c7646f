package natsjs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
)

// CheckpointBucket is the KV bucket holding connectors' checkpoints.
const CheckpointBucket = "cascade_checkpoints"

type checkpoints struct{ b *Broker }

// Checkpoints returns the KV-backed checkpoint store.
func (b *Broker) Checkpoints() broker.Checkpoints { return checkpoints{b} }

func (c checkpoints) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	return c.b.keyValue(ctx, &c.b.ckv, jetstream.KeyValueConfig{
		Bucket:       CheckpointBucket,
		Description:  "cascade connector -> resume position",
		Storage:      jetstream.FileStorage,
		MaxValueSize: broker.MaxCheckpointBytes,
	})
}

// Get reads the checkpoint's key.
func (c checkpoints) Get(ctx context.Context, name string) ([]byte, error) {
	if err := broker.CheckCheckpoint(name); err != nil {
		return nil, err
	}
	kv, err := c.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("checkpoint %s: %w", name, broker.ErrNotFound)
	}
	if err != nil {
		return nil, wrap(fmt.Errorf("get checkpoint %s: %w", name, err))
	}
	return e.Value(), nil
}

// Put writes the checkpoint's key.
func (c checkpoints) Put(ctx context.Context, name string, value []byte) error {
	if err := broker.CheckCheckpointPut(name, value); err != nil {
		return err
	}
	kv, err := c.bucket(ctx)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, name, value); err != nil {
		return wrap(fmt.Errorf("put checkpoint %s: %w", name, err))
	}
	return nil
}
