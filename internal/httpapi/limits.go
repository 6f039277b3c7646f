package httpapi

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// contentSecurityPolicy lets the page load its own script, style and API and nothing else,
// and lets no site frame it. The page has no inline script, style or handler.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
	"img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// secure sets the security headers on every answer, page and API alike.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// clientLimiter keeps a token bucket per client IP. Buckets of clients gone quiet are
// dropped once they are full again, which forgets nothing: a new bucket starts full.
type clientLimiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	swept   time.Time
}

func newClientLimiter(limit rate.Limit, burst int) *clientLimiter {
	return &clientLimiter{limit: limit, burst: burst, clients: map[string]*rate.Limiter{}}
}

// wait is how long the client must wait before its next request is allowed; 0 takes a token.
func (c *clientLimiter) wait(client string, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > time.Minute {
		for k, l := range c.clients {
			if l.TokensAt(now) >= float64(c.burst) {
				delete(c.clients, k)
			}
		}
		c.swept = now
	}
	l := c.clients[client]
	if l == nil {
		l = rate.NewLimiter(c.limit, c.burst)
		c.clients[client] = l
	}
	res := l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}

// limit answers 429 with Retry-After to a client over the POST /v1/signals rate. The client is
// the connection's IP (a proxy in front counts as one client).
func (s *Server) limit(next http.Handler) http.Handler {
	if s.signals == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			client = r.RemoteAddr
		}
		if d := s.signals.wait(client, time.Now()); d > 0 {
			secs := int(math.Ceil(d.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeError(w, http.StatusTooManyRequests, "too many POST /v1/signals from "+client+
				" (limit "+strconv.FormatFloat(s.opts.SignalRate, 'g', -1, 64)+"/s, burst "+strconv.Itoa(s.opts.SignalBurst)+
				"); retry after "+strconv.Itoa(secs)+" s; nothing was published")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// openFeed takes one of the MaxFeeds stream slots, or answers 503 and returns false.
// release gives the slot back.
func (s *Server) openFeed(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case s.feeds <- struct{}{}:
		return func() { <-s.feeds }, true
	default:
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too many open feeds (limit "+strconv.Itoa(s.opts.MaxFeeds)+"); retry later")
		return nil, false
	}
}
