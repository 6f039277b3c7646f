package cli_test

import (
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/event"
)

// TestHelpListsLayersOfTopology: the commands that take a layer list the layers the topology
// declares, in their help and in their refusal.
func TestHelpListsLayersOfTopology(t *testing.T) {
	t.Parallel()
	consumers, feeds := event.JoinLayers(event.ConsumerLayers, "or"), event.JoinLayers(event.FeedLayers, "or")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"consume", "--help"}, 0, "layer to run: " + consumers},
		{[]string{"consume", "--layer", "grid"}, 2, "want " + consumers},
		{[]string{"subscribe", "--help"}, 0, "demand feed of a layer (" + feeds + ")"},
		{[]string{"subscribe", "application"}, 2, "feeds are " + event.JoinLayers(event.FeedLayers, "and")},
		{[]string{"help"}, 0, "demand feed of a layer (" + feeds + ")"},
	} {
		code, stdout, stderr := run(t.Context(), "", nil, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("cascade %s: exit %d, want %d, and output without %q:\n%s%s", strings.Join(c.args, " "), code, c.code, c.want, stdout, stderr)
		}
	}
}
