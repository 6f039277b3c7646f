// Package connect pulls market signals from outside sources into cascade: the Hugging Face
// Hub's new open-weight models, Epoch AI's notable-models dataset, and analysts' own CSV or
// JSON files through a declarative column mapping. Each Source turns what it reads into
// signals with deterministic ids built from the source's own ids and a sourceurl; a Runner
// publishes them through the ordinary ingest path (producers.Publisher: schema and typed
// checks, the tree expanded under the scenario's coefficients, an unregistered scenario
// refused), answers one line per signal as `cascade publish` does, and keeps the source's
// checkpoint on the broker so that the next poll, in this process or another, reads only
// what is new.
package connect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/producers"
)

// Signal is one signal a source read, or in Err why one record of the source cannot be one.
type Signal struct {
	// Line locates the record in what the source read: the CSV line or JSON element of a
	// file or dataset, the position in the listing of an API.
	Line int
	Raw  []byte // the CloudEvent JSON, completed at ingest
	Err  error  // the record is bad; a *event.ValidationError names its field
	// Note says how a figure of the signal was obtained when it is not the source's own
	// (an estimate); it is printed with the signal's answer line.
	Note string
}

// Batch is what one poll of a source read: its signals and the checkpoint to keep once they
// are published.
type Batch struct {
	Signals []Signal
	// Checkpoint is the source's position after these signals; nil leaves the stored one.
	Checkpoint []byte
}

// Source is one outside source of signals.
type Source interface {
	// Name is the source's checkpoint name on the broker (e.g. "connect/huggingface").
	Name() string
	// Poll reads what the source has beyond checkpoint (nil on the first poll) and returns
	// it as signals with the new checkpoint. A response that is not what the source
	// documents is an error naming the field; a source that does not answer in time or
	// keeps failing is an error matching ErrUnavailable.
	Poll(ctx context.Context, checkpoint []byte) (Batch, error)
}

// Answer is the answer line of one signal: publish's Result, with the source's note.
type Answer struct {
	producers.Result
	Note string `json:"note,omitempty"`
}

// Runner polls one source and publishes what it reads.
type Runner struct {
	Source    Source
	Publisher *producers.Publisher
	// Checkpoints keeps the source's position; nil (a dry run) starts from nothing each
	// time and keeps nothing.
	Checkpoints broker.Checkpoints
	// Answer receives each signal's answer line, in order.
	Answer func(Answer) error
	Log    zerolog.Logger
}

// Summary counts the signals of one poll.
type Summary struct {
	Read    int // signals and bad records read
	Refused int // answered with an error
}

// checkpointTimeout bounds each read and write of the checkpoint on the broker.
const checkpointTimeout = producers.DefaultAckTimeout

// ErrNotTaken is matched by the error of a poll whose signals were answered but not all
// taken: some were refused, or the broker did not take them.
var ErrNotTaken = errors.New("not every signal was taken")

// Once polls the source once from its stored checkpoint, publishes the signals, answers each
// and, when the broker took the batch, stores the new checkpoint: a signal refused for what
// it is would be refused again, so it does not hold the source back, but one the broker
// did not take is read again on the next poll. Polling again then adds nothing.
func (r *Runner) Once(ctx context.Context) (Summary, error) {
	name := r.Source.Name()
	var cp []byte
	if r.Checkpoints != nil {
		gctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
		var err error
		cp, err = r.Checkpoints.Get(gctx, name)
		cancel()
		if err != nil && !errors.Is(err, broker.ErrNotFound) {
			return Summary{}, fmt.Errorf("reading checkpoint %s: %w", name, err)
		}
	}
	batch, err := r.Source.Poll(ctx, cp)
	if err != nil {
		return Summary{}, fmt.Errorf("%s: %w", name, err)
	}
	items := make([]producers.Item, len(batch.Signals))
	for i, s := range batch.Signals {
		items[i] = producers.Item{Line: s.Line, Raw: s.Raw, Err: s.Err}
	}
	refused, stopped := r.Publisher.PublishAll(ctx, items, func(i int, res producers.Result) error {
		return r.Answer(Answer{Result: res, Note: batch.Signals[i].Note})
	})
	sum := Summary{Read: len(items), Refused: refused}
	if stopped != nil {
		return sum, fmt.Errorf("%w: %d of %d: %w", ErrNotTaken, refused, len(items), stopped)
	}
	if r.Checkpoints != nil && batch.Checkpoint != nil {
		pctx, cancel := context.WithTimeout(ctx, checkpointTimeout)
		defer cancel()
		if err := r.Checkpoints.Put(pctx, name, batch.Checkpoint); err != nil {
			return sum, fmt.Errorf("storing checkpoint %s (the signals were published; the next poll publishes them again under the same ids): %w", name, err)
		}
	}
	if refused > 0 {
		return sum, fmt.Errorf("%w: %d of %d refused", ErrNotTaken, refused, len(items))
	}
	return sum, nil
}

// Every polls the source now and then every interval until ctx ends. A poll that fails is
// logged and tried again at the next tick; Every returns nil when ctx ends.
func (r *Runner) Every(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		sum, err := r.Once(ctx)
		ev := r.Log.Info()
		if err != nil {
			ev = r.Log.Warn().Err(err)
		}
		ev.Str("source", r.Source.Name()).Int("read", sum.Read).Int("refused", sum.Refused).
			Msgf("poll done; next in %s", interval)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// envelope is the part of a signal a source writes; ingest completes the rest.
type envelope struct {
	ID        string    `json:"id"`
	Source    string    `json:"source"`
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	SourceURL string    `json:"sourceurl"`
	Data      any       `json:"data"`
}

// signal is the Signal of record line carrying e; a payload that does not encode (a
// number that is not finite) makes it a bad record.
func (e envelope) signal(line int, note string) Signal {
	b, err := json.Marshal(e)
	if err != nil {
		return Signal{Line: line, Err: &event.ValidationError{Field: "data", Rule: err.Error()}}
	}
	return Signal{Line: line, Raw: b, Note: note}
}
