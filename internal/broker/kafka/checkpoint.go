package kafka

import (
	"context"
	"fmt"
	"sync"

	"github.com/layercake/cascade/internal/broker"
)

// checkpoints keeps connectors' checkpoints in the compacted topic cascade.checkpoints (one
// partition; key = name, value = the checkpoint), read as the registry is.
type checkpoints struct {
	mu    sync.Mutex
	log   *compacted
	state map[string][]byte
}

func newCheckpoints(b *Broker) *checkpoints {
	c := &checkpoints{state: map[string][]byte{}}
	c.log = &compacted{b: b, topic: CheckpointTopic, reset: func() { c.state = map[string][]byte{} }, apply: func(key string, val []byte, _ int64) {
		if len(val) == 0 {
			delete(c.state, key)
			return
		}
		c.state[key] = val
	}}
	return c
}

// Checkpoints returns the checkpoint store kept in the compacted topic cascade.checkpoints.
func (b *Broker) Checkpoints() broker.Checkpoints { return b.ckp }

// Get returns the latest value written under name, or an error matching broker.ErrNotFound.
func (c *checkpoints) Get(ctx context.Context, name string) ([]byte, error) {
	if err := broker.CheckCheckpoint(name); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.log.refresh(ctx); err != nil {
		return nil, err
	}
	v, ok := c.state[name]
	if !ok {
		return nil, fmt.Errorf("checkpoint %s: %w", name, broker.ErrNotFound)
	}
	return v, nil
}

// Put writes value under name (an empty value, which would be a tombstone, is refused).
func (c *checkpoints) Put(ctx context.Context, name string, value []byte) error {
	if err := broker.CheckCheckpointPut(name, value); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.log.write(ctx, name, value); err != nil {
		return err
	}
	return c.log.refresh(ctx)
}
