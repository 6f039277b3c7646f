package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

var _ broker.Getter = (*Broker)(nil)

// Position is "<topic>/<partition>:<offset>", the one record Get fetches again; unlike a feed
// delivery's Cursor, which is a resume point over every partition.
func (d *delivery) Position() string {
	return d.km.Topic + "/" + strconv.Itoa(d.km.Partition) + ":" + strconv.FormatInt(d.km.Offset, 10)
}

// Get fetches the one record at position "<topic>/<partition>:<offset>" (a delivery's
// Position) of scenario's topics. A record retention or compaction removed, or an offset not
// yet written, is an error matching broker.ErrNotFound; a position that is not of that form
// or names another scenario's topic matches event.ErrInvalid.
func (b *Broker) Get(ctx context.Context, scenario, position string) (*broker.Message, error) {
	topic, part, off, err := parsePosition(position)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(scenarioTopics(scenario), topic) {
		return nil, fmt.Errorf("%w: position %q is not in scenario %s", event.ErrInvalid, position, scenario)
	}
	resp, err := b.client.Fetch(ctx, &kafka.FetchRequest{
		Topic: topic, Partition: part, Offset: off,
		MinBytes: 1, MaxBytes: 1 << 20, MaxWait: b.opts.MaxWait,
	})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	switch {
	case errors.Is(err, kafka.OffsetOutOfRange):
		return nil, fmt.Errorf("record %s of %s: %w", position, scenario, broker.ErrNotFound)
	case errors.Is(err, kafka.UnknownTopicOrPartition):
		return nil, fmt.Errorf("topic %s of %s: %w", topic, scenario, broker.ErrNotFound)
	case err != nil:
		return nil, wrap(fmt.Errorf("get %s: %w", position, err))
	}
	for {
		rec, err := resp.Records.ReadRecord()
		if err != nil || rec.Offset > off {
			// The batch ended, or began past off: compaction removed the record.
			return nil, fmt.Errorf("record %s of %s: %w", position, scenario, broker.ErrNotFound)
		}
		if rec.Offset < off {
			continue
		}
		key, _ := kafka.ReadAll(rec.Key)
		val, err := kafka.ReadAll(rec.Value)
		if err != nil {
			return nil, wrap(fmt.Errorf("get %s: %w", position, err))
		}
		m := toMessage(topic, key, val, rec.Headers)
		return &m, nil
	}
}

// parsePosition splits "<topic>/<partition>:<offset>".
func parsePosition(pos string) (topic string, partition int, offset int64, err error) {
	bad := fmt.Errorf("%w: position %q: want <topic>/<partition>:<offset>", event.ErrInvalid, pos)
	i := strings.LastIndexByte(pos, '/')
	if i <= 0 {
		return "", 0, 0, bad
	}
	p, o, ok := strings.Cut(pos[i+1:], ":")
	if !ok {
		return "", 0, 0, bad
	}
	partition, perr := strconv.Atoi(p)
	offset, oerr := strconv.ParseInt(o, 10, 64)
	if perr != nil || oerr != nil || partition < 0 || offset < 0 {
		return "", 0, 0, bad
	}
	return pos[:i], partition, offset, nil
}
