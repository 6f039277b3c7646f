package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// ErrUnavailable is matched by the error of a source that did not answer, or kept answering
// 429 or 5xx, until the client's MaxElapsed had passed.
var ErrUnavailable = errors.New("source unavailable")

// ErrNotFound is matched by the error of a request answered 404.
var ErrNotFound = errors.New("not found at the source")

// Client fetches documents from a source over HTTP, backing off on 429 and 5xx (and on
// connection errors): exponentially, or as long as the answer's Retry-After says.
type Client struct {
	HTTP      *http.Client // default: one with a 30s timeout
	UserAgent string       // default "cascade-connect"
	MaxBody   int64        // largest body read; default 64 MiB
	// MaxElapsed bounds the retries of one request; default 2 minutes.
	MaxElapsed time.Duration
	// OnRetry, when set, is told of each failed try and the wait before the next.
	OnRetry func(err error, wait time.Duration)
}

// statusError is an answer other than 200.
type statusError struct {
	url    string
	status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.url, e.status, http.StatusText(e.status))
}

// Get fetches url and returns its body and headers; an answer other than 200 is an error
// (ErrNotFound for 404; after the retries, ErrUnavailable for 429 and 5xx).
func (c *Client) Get(ctx context.Context, url string) ([]byte, http.Header, error) {
	type answer struct {
		body []byte
		hdr  http.Header
	}
	op := func() (answer, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return answer{}, backoff.Permanent(fmt.Errorf("GET %s: %w", url, err))
		}
		req.Header.Set("User-Agent", c.userAgent())
		resp, err := c.client().Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return answer{}, backoff.Permanent(err)
			}
			return answer{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		defer func() { _ = resp.Body.Close() }() // a read path: the body is read whole first
		body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody()+1))
		if err != nil {
			return answer{}, fmt.Errorf("%w: GET %s: reading the body: %w", ErrUnavailable, url, err)
		}
		switch st := resp.StatusCode; {
		case st == http.StatusOK:
			if int64(len(body)) > c.maxBody() {
				return answer{}, backoff.Permanent(fmt.Errorf("GET %s: the body is over %d bytes", url, c.maxBody()))
			}
			return answer{body, resp.Header}, nil
		case st == http.StatusTooManyRequests || st >= 500:
			serr := fmt.Errorf("%w: %w", ErrUnavailable, &statusError{url, st})
			if secs, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return answer{}, fmt.Errorf("%w (%w)", backoff.RetryAfter(secs), serr)
			}
			return answer{}, serr
		case st == http.StatusNotFound:
			return answer{}, backoff.Permanent(fmt.Errorf("%w: %w", ErrNotFound, &statusError{url, st}))
		default:
			return answer{}, backoff.Permanent(&statusError{url, st})
		}
	}
	notify := func(err error, wait time.Duration) {
		if c.OnRetry != nil {
			c.OnRetry(err, wait)
		}
	}
	a, err := backoff.Retry(ctx, op, backoff.WithBackOff(backoff.NewExponentialBackOff()),
		backoff.WithMaxElapsedTime(c.maxElapsed()), backoff.WithNotify(notify))
	if err != nil {
		return nil, nil, err
	}
	return a.body, a.hdr, nil
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (int, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return n, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, int(t.Sub(now).Round(time.Second)/time.Second)), true
	}
	return 0, false
}

func (c *Client) client() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return defaultHTTP
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

func (c *Client) userAgent() string {
	if c.UserAgent != "" {
		return c.UserAgent
	}
	return "cascade-connect"
}

func (c *Client) maxBody() int64 {
	if c.MaxBody > 0 {
		return c.MaxBody
	}
	return 64 << 20
}

func (c *Client) maxElapsed() time.Duration {
	if c.MaxElapsed > 0 {
		return c.MaxElapsed
	}
	return 2 * time.Minute
}
