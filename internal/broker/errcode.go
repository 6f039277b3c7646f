package broker

import (
	"errors"
	"fmt"

	"github.com/layercake/cascade/internal/event"
)

// ErrNoEvent means no event with the asked id is stored in the scenario.
var ErrNoEvent = errors.New("no such event")

// ErrNoResponders means nobody serves a request's subject (no `cascade run` is up); it
// matches ErrUnavailable too.
var ErrNoResponders = fmt.Errorf("%w: no responders", ErrUnavailable)

// errorCodes names the error classes a reply carries across processes, the more specific
// first (ErrNoResponders before ErrUnavailable).
var errorCodes = []struct {
	code string
	err  error
}{
	{"no_event", ErrNoEvent},
	{"not_found", ErrNotFound},
	{"invalid", event.ErrInvalid},
	{"conflict", ErrConflict},
	{"no_responders", ErrNoResponders},
	{"unavailable", ErrUnavailable},
	{"closed", ErrClosed},
}

// ErrorCode is the class of err as a reply states it: "no_event", "not_found", "invalid",
// "conflict", "no_responders", "unavailable", "closed", or "internal" for any other error.
func ErrorCode(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// CodeError rebuilds on the requester's side an error a reply carried: its text is msg and it
// matches (errors.Is) the sentinel of code; an unknown or "internal" code matches none.
func CodeError(code, msg string) error {
	for _, c := range errorCodes {
		if c.code == code {
			return &codedError{msg: msg, class: c.err}
		}
	}
	return errors.New(msg)
}

type codedError struct {
	msg   string
	class error
}

func (e *codedError) Error() string { return e.msg }
func (e *codedError) Unwrap() error { return e.class }

// Positioned is implemented by the deliveries of brokers that are Getters: Position names
// the one stored message (unlike a feed's Cursor, which may name a point in every
// partition), for Getter.Get to fetch it again. NATS: the stream sequence; Kafka:
// "<topic>/<partition>:<offset>".
type Positioned interface {
	Position() string
}

// PositionOf names d's stored message: its Position where it has one, else its Cursor (what
// the view's id set records, and what the stages compare with it).
func PositionOf(d Delivery) string {
	if p, ok := d.(Positioned); ok {
		return p.Position()
	}
	return d.Cursor()
}
