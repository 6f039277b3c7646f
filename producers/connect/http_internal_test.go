package connect

import (
	"net/http"
	"testing"
	"time"
)

// Retry-After is read as delay-seconds or as an HTTP date (RFC 9110 §10.2.3); a date past
// is no wait, and anything else is ignored (the exponential back-off applies).
func TestRetryAfterReadsSecondsAndDates(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		header string
		secs   int
		ok     bool
	}{
		{"7", 7, true},
		{"0", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
	} {
		if secs, ok := retryAfter(c.header, now); secs != c.secs || ok != c.ok {
			t.Errorf("Retry-After %q: %d %v, want %d %v", c.header, secs, ok, c.secs, c.ok)
		}
	}
}
