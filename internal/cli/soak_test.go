package cli_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/conformance"
)

// A short `cascade soak` on a 3-node cluster of child processes with every fault: the
// faults are injected, signals published and every derived event is found exactly once.
func TestSoakShort(t *testing.T) {
	t.Parallel()
	var out, errb conformance.SyncBuffer
	code := cli.Main{Stdout: &out, Stderr: &errb, Args: []string{"soak", "--duration", "20s", "--fault-every", "3s",
		"--rate", "20", "--faults", "worker,leader,node", "--data-dir", t.TempDir()}}.Run(t.Context())
	if code != 0 {
		t.Fatalf("soak exited %d:\n%s\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	figure := func(name string) int {
		m := regexp.MustCompile(`(?m)^` + name + `: (\d+)`).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("no %q line in:\n%s", name, report)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if n := figure("faults injected"); n < 2 {
		t.Errorf("%d faults injected in 20s every 3s:\n%s\n%s", n, report, errb.String())
	}
	signals, checked := figure("signals"), figure("events checked")
	if signals < 100 || checked < 10*signals {
		t.Errorf("%d signals, %d events checked (each signal derives ~20):\n%s", signals, checked, report)
	}
	if figure("lost") != 0 || figure("duplicated") != 0 || figure("unexpected") != 0 || !strings.Contains(report, "totals: equal to the formulas\n") {
		t.Errorf("report:\n%s", report)
	}
	for _, fault := range []string{"leader: SIGKILLed node n", "worker: SIGKILLed worker w"} {
		if !strings.Contains(errb.String(), fault) {
			t.Errorf("no %q in the progress:\n%s", fault, errb.String())
		}
	}
}

// Bad soak flags are usage errors naming the flag.
func TestSoakFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--faults", "leader,disk"}, `--faults: fault "disk"`},
		{[]string{"--duration", "0s"}, "--duration 0s"},
		{[]string{"--rate", "0"}, "--rate 0"},
		{[]string{"--workers", "0"}, "--workers 0"},
		{[]string{"--fault-every", "10ms"}, "--fault-every 10ms"},
	} {
		var out, errb conformance.SyncBuffer
		code := cli.Main{Stdout: &out, Stderr: &errb, Args: append([]string{"soak"}, tc.args...)}.Run(t.Context())
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("soak %v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
