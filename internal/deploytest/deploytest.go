// Package deploytest holds what the offline tests of the deploy files (deploy/nats,
// deploy/k8s) check against cascade itself: that a container's command line parses as a
// cascade command, that its CASCADE_* variables name that command's flags, that the stages the
// containers run tile the layers, and that the metrics a rule, dashboard or autoscaler queries
// are ones cascade serves.
package deploytest

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/layercake/cascade/consumers"
	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/event"
	"github.com/layercake/cascade/internal/metrics"
)

// CheckCommand fails t unless args (a container's command, without the binary) parse as a
// cascade command and every CASCADE_<FLAG> key of env names one of that command's flags.
func CheckCommand(t testing.TB, where string, args []string, env []string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main{Stdout: &out, Stderr: &errb, Args: append(append([]string{}, args...), "--help")}.Run(context.Background())
	if code != 0 {
		t.Errorf("%s: cascade %s does not parse (exit %d): %s", where, strings.Join(args, " "), code, errb.String())
		return
	}
	for _, key := range env {
		flag, ok := strings.CutPrefix(key, "CASCADE_")
		if !ok {
			continue
		}
		name := "--" + strings.ReplaceAll(strings.ToLower(flag), "_", "-") + " "
		if !strings.Contains(out.String(), name) {
			t.Errorf("%s: %s names no flag of cascade %s (no %s)", where, key, args[0], strings.TrimSpace(name))
		}
	}
}

// Stages is what a container's cascade command (args without the binary, env its
// environment) runs as stages, parsed with cascade's own parsers: `consume --layer L` or
// `--layers A-B` one stage, `run` the five layers grouped by --stages (default chained), any
// other command none. A flag on the command line wins over CASCADE_<FLAG>, as in cascade.
func Stages(t testing.TB, where string, args []string, env map[string]string) []event.Stage {
	t.Helper()
	if len(args) == 0 || args[0] != "run" && args[0] != "consume" {
		return nil
	}
	fs := pflag.NewFlagSet(args[0], pflag.ContinueOnError)
	fs.ParseErrorsAllowlist.UnknownFlags = true
	layer := fs.String("layer", env["CASCADE_LAYER"], "")
	layers := fs.String("layers", env["CASCADE_LAYERS"], "")
	stages := fs.String("stages", string(consumers.Chained), "")
	if v := env["CASCADE_STAGES"]; v != "" {
		*stages = v
	}
	if err := fs.Parse(args[1:]); err != nil {
		t.Errorf("%s: %v", where, err)
		return nil
	}
	switch {
	case args[0] == "run":
		mode, err := consumers.ParseStages(*stages)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return nil
		}
		return consumers.Group(event.ConsumerLayers, mode)
	case *layer != "":
		l, err := event.ParseLayer(*layer)
		if err != nil {
			t.Errorf("%s: --layer: %v", where, err)
			return nil
		}
		return []event.Stage{event.LayerStage(l)}
	case *layers != "":
		st, err := event.ParseStage(*layers)
		if err != nil {
			t.Errorf("%s: --layers: %v", where, err)
			return nil
		}
		return []event.Stage{st}
	}
	return nil
}

// CheckTiling fails t unless the stages the containers run (by container) tile the consumer
// layers: every layer in exactly one distinct stage. Containers of one stage share its durable
// consumer; a stage sharing a layer with another is refused by cascade on the broker, so such
// a deployment would leave one of them consuming nothing (it logs the refusal).
func CheckTiling(t testing.TB, byContainer map[string][]event.Stage) {
	t.Helper()
	var distinct []event.Stage
	where := map[event.Stage][]string{}
	for name, stages := range byContainer {
		for _, st := range stages {
			if _, seen := where[st]; !seen {
				distinct = append(distinct, st)
			}
			where[st] = append(where[st], name)
		}
	}
	if err := event.Tiling(distinct); err != nil {
		t.Errorf("the containers' stages do not tile the layers: %v (run by %v)", err, where)
	}
	for _, l := range event.ConsumerLayers {
		covered := false
		for _, st := range distinct {
			covered = covered || st.Contains(l)
		}
		if !covered {
			t.Errorf("no container runs layer %s (stages %v)", l, where)
		}
	}
}

// Metrics is the name of every series cascade's layer processes serve under cascade_ (a
// histogram's _bucket, _sum and _count included).
func Metrics(t testing.TB) map[string]bool {
	t.Helper()
	m := metrics.New(prometheus.NewRegistry())
	names := map[string]bool{"cascade_build_info": true}
	for _, c := range []prometheus.Collector{m.In, m.Out, m.DLQ, m.Processing, m.Pending, m.Demand} {
		ch := make(chan *prometheus.Desc, 1)
		c.Describe(ch)
		found := fqName.FindStringSubmatch((<-ch).String())
		if found == nil {
			t.Fatalf("no name in the description of %T", c)
		}
		names[found[1]] = true
		if _, ok := c.(*prometheus.HistogramVec); ok {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				names[found[1]+s] = true
			}
		}
	}
	return names
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

var metricName = regexp.MustCompile(`\bcascade_[a-z_]+\b`)

// CheckQuery fails t if expr queries a cascade_ metric that cascade does not serve, or none.
func CheckQuery(t testing.TB, where, expr string, served map[string]bool) {
	t.Helper()
	used := metricName.FindAllString(expr, -1)
	if len(used) == 0 && !strings.Contains(expr, "up{") {
		t.Errorf("%s: %q queries no cascade metric", where, expr)
	}
	for _, n := range used {
		if !served[n] {
			t.Errorf("%s: %s is not a metric cascade serves (internal/metrics)", where, n)
		}
	}
}
