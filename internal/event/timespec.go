package event

import (
	"fmt"
	"time"
)

// ParseTime reads a user's time: RFC 3339, or YYYY-MM-DD meaning midnight UTC.
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%w: time %q: want RFC 3339 or YYYY-MM-DD", ErrInvalid, s)
}

// ParseSince reads a start time: as ParseTime, or a duration meaning that long before now.
// The empty string is the zero time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	return ParseTime(s)
}

// InRange reports whether t is in the half-open range [since, until); a zero bound is open.
func InRange(t, since, until time.Time) bool {
	return (since.IsZero() || !t.Before(since)) && (until.IsZero() || t.Before(until))
}
