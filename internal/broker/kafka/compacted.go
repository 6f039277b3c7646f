package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/layercake/cascade/internal/broker"
	"github.com/segmentio/kafka-go"
)

// compacted reads and writes a compacted topic of one partition as a key-value log: it
// applies each record to its owner's state (apply; an empty value is a deletion) and, on each
// refresh, reads only the records appended since, up to the end offset, without a consumer
// group. Its owner serialises the calls.
type compacted struct {
	b     *Broker
	topic string
	apply func(key string, val []byte, offset int64)
	reset func() // forget the state: the log is read again from its start

	ready bool  // the topic exists
	next  int64 // offset after the last record applied
}

// refresh makes sure the topic exists and applies the records appended since the last call.
func (c *compacted) refresh(ctx context.Context) error {
	if c.b.isClosed() {
		return broker.ErrClosed
	}
	if !c.ready {
		cfg := []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
		if _, err := c.b.ensureTopics(ctx, []string{c.topic}, 1, 0, cfg); err != nil {
			return fmt.Errorf("%s: %w", c.topic, err)
		}
		c.ready = true
	}
	p := tp{c.topic, 0}
	first, end, err := c.b.bounds(ctx, []tp{p})
	if err != nil {
		return fmt.Errorf("%s: %w", c.topic, err)
	}
	if c.next < first[p] {
		// Compaction or retention removed records we had not read: read it all again.
		c.reset()
		c.next = first[p]
	}
	for c.next < end[p] {
		resp, err := c.b.client.Fetch(ctx, &kafka.FetchRequest{
			Topic: c.topic, Partition: 0, Offset: c.next, MinBytes: 1, MaxBytes: 4 << 20, MaxWait: c.b.opts.MaxWait,
		})
		if err == nil && resp.Error != nil {
			err = resp.Error
		}
		if errors.Is(err, kafka.RequestTimedOut) && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return wrap(fmt.Errorf("%s: read at %d: %w", c.topic, c.next, err))
		}
		got := 0
		for {
			rec, err := resp.Records.ReadRecord()
			if err != nil {
				break
			}
			if rec.Offset < c.next {
				continue
			}
			key, _ := kafka.ReadAll(rec.Key)
			val, err := kafka.ReadAll(rec.Value)
			if err != nil {
				return wrap(fmt.Errorf("%s: read record %d: %w", c.topic, rec.Offset, err))
			}
			c.next = rec.Offset + 1
			got++
			c.apply(string(key), val, rec.Offset)
		}
		if got == 0 {
			if resp.LogStartOffset > c.next {
				c.next = resp.LogStartOffset
				continue
			}
			if resp.HighWatermark >= end[p] {
				break // the rest is compacted away
			}
		}
	}
	return nil
}

// write appends the record key = val (an empty val deletes key).
func (c *compacted) write(ctx context.Context, key string, val []byte) error {
	err := c.b.w.WriteMessages(ctx, kafka.Message{Topic: c.topic, Key: []byte(key), Value: val})
	if err != nil {
		return wrap(fmt.Errorf("%s: write %s: %w", c.topic, key, err))
	}
	return nil
}
