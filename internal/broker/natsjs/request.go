package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/layercake/cascade/internal/broker"
	"github.com/layercake/cascade/internal/event"
)

// Get fetches one stored message by its cursor (the stream sequence).
func (b *Broker) Get(ctx context.Context, scenario, cursor string) (*broker.Message, error) {
	seq, err := strconv.ParseUint(cursor, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: cursor %q", event.ErrInvalid, cursor)
	}
	st, err := b.js.Stream(ctx, event.StreamName(scenario))
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("scenario %s: %w", scenario, broker.ErrNotFound)
		}
		return nil, wrap(err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, fmt.Errorf("message %d of %s: %w", seq, scenario, broker.ErrNotFound)
		}
		return nil, wrap(err)
	}
	m := &broker.Message{Subject: raw.Subject, Data: raw.Data, ID: raw.Header.Get(jetstream.MsgIDHeader)}
	return m, nil
}

// Position is the message's stream sequence, which Get takes.
func (d *delivery) Position() string { return strconv.FormatUint(d.Seq(), 10) }

// Headers that carry a responder's error back to the requester: its text, and its class
// (broker.ErrorCode), which Request maps back to the class's sentinel.
const (
	errorHeader     = "Cascade-Error"
	errorCodeHeader = "Cascade-Error-Code"
)

// Respond answers requests on subject with handle, in a queue group so several responders
// share them.
func (b *Broker) Respond(ctx context.Context, subject string, handle func(context.Context, []byte) ([]byte, error)) error {
	sub, err := b.nc.QueueSubscribe(subject, "cascade", func(m *nats.Msg) {
		out, err := handle(ctx, m.Data)
		reply := nats.NewMsg(m.Reply)
		if err != nil {
			reply.Header.Set(errorHeader, err.Error())
			reply.Header.Set(errorCodeHeader, broker.ErrorCode(err))
		} else {
			reply.Data = out
		}
		_ = m.RespondMsg(reply)
	})
	if err != nil {
		return wrap(fmt.Errorf("respond on %s: %w", subject, err))
	}
	<-ctx.Done()
	return sub.Unsubscribe()
}

// Request sends req to subject's responder and returns its reply. An error the responder
// returned comes back with its class: errors.Is matches the sentinel it matched there.
// Nobody serving subject gives broker.ErrNoResponders.
func (b *Broker) Request(ctx context.Context, subject string, req []byte) ([]byte, error) {
	m, err := b.nc.RequestWithContext(ctx, subject, req)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w: nobody answers %s", broker.ErrNoResponders, subject)
		}
		return nil, wrap(fmt.Errorf("request %s: %w", subject, err))
	}
	if e := m.Header.Get(errorHeader); e != "" {
		return nil, broker.CodeError(m.Header.Get(errorCodeHeader), e)
	}
	return m.Data, nil
}
