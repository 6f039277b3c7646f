package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layercake/cascade/internal/cli"
	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/event"
	"github.com/nats-io/nats.go/jetstream"
)

// TestMain lets this test binary be cascade itself when a fault test starts a stage worker
// or a node as a process of its own (its first argument is then a command, not a -test flag).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == netnsNodeArg {
		if err := runNetnsNode(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Args: os.Args[1:], Getenv: os.Getenv}.Run(ctx)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// worker is a process of the chained stage, `cascade consume --layers application-energy`.
type worker struct {
	cmd  *exec.Cmd
	logs *SyncBuffer
	done chan struct{}
}

// startWorker starts a worker of the chain on the cluster at url; t.Cleanup kills it.
func startWorker(t *testing.T, url string) *worker {
	t.Helper()
	w := &worker{logs: &SyncBuffer{}, done: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "consume", "--layers", event.Chain.String(), "--nats-url", url,
		"--http-listen", "", "--batch", "64", "--log-format", "json", "--log-level", "warn")
	w.cmd.Stdout, w.cmd.Stderr = w.logs, w.logs
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		w.kill()
		if t.Failed() {
			t.Logf("worker pid %d:\n%s", w.cmd.Process.Pid, w.logs.String())
		}
	})
	return w
}

// kill SIGKILLs the worker (a stopped one too) and waits for it to be gone.
func (w *worker) kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
}

func (w *worker) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// chainInfo is the chained stage's consumer as the server sees it.
func (r *faultRun) chainInfo(t *testing.T) (*jetstream.ConsumerInfo, error) {
	t.Helper()
	c, err := r.js.Consumer(t.Context(), event.StreamName("base"), event.Chain.ConsumerName("base"))
	if err != nil {
		return nil, err
	}
	return c.Info(t.Context())
}

// publishUntilHeld publishes raws in chunks until the stage's workers hold deliveries they
// have not acknowledged (a worker is mid-batch: it acknowledges a batch's inputs once what
// they derive is stored), and returns how many it published. A chunk the workers finish
// before they are seen holding it is followed by the next.
func (r *faultRun) publishUntilHeld(t *testing.T, raws []string) int {
	t.Helper()
	for used := 0; used < len(raws); {
		n := min(20, len(raws)-used)
		r.publish(t, raws[used:used+n])
		used += n
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if info, err := r.chainInfo(t); err == nil && info.NumAckPending > 0 {
				return used
			}
		}
	}
	t.Fatalf("no worker was seen holding a delivery over %d signals", len(raws))
	return 0
}

// A stage worker process is SIGKILLed mid-batch, signals keep coming, and a new process of
// the stage takes its unacknowledged work up: nothing lost, nothing twice.
func TestFaultWorkerKilledMidBatch(t *testing.T) {
	t.Parallel()
	r := newFaultRun(t, 104)
	w := startWorker(t, r.c.URL())
	used := r.publishUntilHeld(t, r.raws)
	w.kill()
	r.publish(t, r.raws[used:])
	startWorker(t, r.c.URL())
	r.settle(t)
}

// Two processes share the stage; one is SIGKILLed mid-batch and never comes back: the other
// gets its unacknowledged deliveries after the ack wait and finishes everything.
func TestFaultTwoWorkersKillOne(t *testing.T) {
	t.Parallel()
	r := newFaultRun(t, 105)
	w1 := startWorker(t, r.c.URL())
	startWorker(t, r.c.URL())
	used := r.publishUntilHeld(t, r.raws)
	w1.kill()
	r.publish(t, r.raws[used:])
	r.settle(t)
}

// One of two workers is frozen (SIGSTOP) mid-batch past the ack wait: the other finishes
// everything, the frozen one's deliveries included; woken (SIGCONT), it goes on with what it
// held, which is stored once, and with new signals.
func TestFaultWorkerPausedPastAckWait(t *testing.T) {
	t.Parallel()
	r := newFaultRun(t, 106)
	w1 := startWorker(t, r.c.URL())
	used := r.publishUntilHeld(t, r.raws[:len(r.raws)-40]) // the last 40 for after SIGCONT
	w1.signal(t, syscall.SIGSTOP)
	startWorker(t, r.c.URL())
	// Past the ack wait: the server delivers what w1 holds again (to the other worker).
	Eventually(t, 30*time.Second, "deliveries redelivered past the ack wait", func() error {
		info, err := r.chainInfo(t)
		if err != nil {
			return err
		}
		if info.NumRedelivered == 0 {
			return fmt.Errorf("nothing redelivered yet (%d ack pending)", info.NumAckPending)
		}
		return nil
	})
	// All of it with w1 frozen: its deliveries went to the other after the ack wait.
	r.settleOn(t, expected(t, coefficients.Default(), "base", r.raws[:used]))
	w1.signal(t, syscall.SIGCONT)
	r.publish(t, r.raws[used:])
	r.settle(t)
}
