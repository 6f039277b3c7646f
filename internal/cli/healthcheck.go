package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCmd is `cascade healthcheck`: one GET of a serving process's probe, for a
// container's HEALTHCHECK (the image has no shell or curl).
func (a *app) healthcheckCmd() *cobra.Command {
	var listen, path string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "GET /healthz (or --path) of a running cascade; exit 0 if it answers 200, else 1",
		Long: `Asks the HTTP address of a running run or consume process for its probe and exits 0 when it
answers 200 OK, 1 otherwise (saying why). --http-listen is the serving process's own flag, so
CASCADE_HTTP_LISTEN set for both reaches both; an unspecified host (0.0.0.0, ::) is asked on
loopback. Use --path /readyz for readiness: broker connected and every layer consuming.`,
		Example: `  cascade healthcheck
  CASCADE_HTTP_LISTEN=0.0.0.0:8080 cascade healthcheck --path /readyz`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !strings.HasPrefix(path, "/") {
				return usageError("--path %q: want a path starting with /", path)
			}
			if timeout <= 0 {
				return usageError("--timeout %s: must be positive", timeout)
			}
			url, err := probeURL(listen, path)
			if err != nil {
				return usageError("--http-listen %q: %v", listen, err)
			}
			return healthcheck(cmd.Context(), url, timeout, a.Stdout)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "http-listen", "127.0.0.1:8080", "HTTP address of the process to check (its --http-listen)")
	f.StringVar(&path, "path", "/healthz", "probe to GET: /healthz (alive) or /readyz (ready)")
	f.DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	return cmd
}

// probeURL is the URL of path on the process listening at listen.
func probeURL(listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

func healthcheck(ctx context.Context, url string, timeout time.Duration, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintf(out, "%s: %s\n", url, strings.TrimSpace(string(body)))
	return nil
}
