// Package deploy holds the deployment files; this test checks the image's Dockerfile.
package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The image runs as a non-root user and its HEALTHCHECK is `cascade healthcheck`, run by the
// binary the image ships (exec form: there is no shell).
func TestDockerfile(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "0") || strings.HasPrefix(users[len(users)-1][1], "root") {
		t.Errorf("the final USER is %v; want a non-root uid", users)
	}
	hc := regexp.MustCompile(`(?m)^HEALTHCHECK\s.*CMD\s+(\[.*\])\s*$`).FindStringSubmatch(text)
	if hc == nil || hc[1] != `["/usr/local/bin/cascade", "healthcheck"]` {
		t.Errorf("HEALTHCHECK %v; want CMD [\"/usr/local/bin/cascade\", \"healthcheck\"]", hc)
	}
	if !strings.Contains(text, "COPY --from=build /cascade /usr/local/bin/cascade") {
		t.Error("the image does not ship the binary at /usr/local/bin/cascade")
	}
}
