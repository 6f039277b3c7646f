package cli_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/layercake/cascade/internal/broker/kafka/kafkatest"
	"github.com/layercake/cascade/internal/conformance"
	"github.com/layercake/cascade/internal/event"
)

// One rule on both brokers: a flag that does not apply to the broker chosen is refused naming
// it, storage flags exist only on a scenario's owners, bad flag values and arguments exit 2,
// runtime errors exit 1.
func TestFlagsRefusedAndExitCodesOnBothBrokers(t *testing.T) {
	t.Parallel()
	_, natsEnv := startBroker(t)
	kafkaEnv := map[string]string{"CASCADE_KAFKA_BROKERS": strings.Join(kafkatest.Cluster(t), ",")}
	type c struct {
		args []string
		code int
		want string // in stderr
	}
	both := []c{
		{[]string{"publish", "--dedup-window", "1m", "--dry-run"}, 2, "unknown flag: --dedup-window"},
		{[]string{"consume", "--layer", "chips", "--retention-max-age", "1h"}, 2, "unknown flag: --retention-max-age"},
		{[]string{"totals", "--kafka-partitions", "3"}, 2, "unknown flag: --kafka-partitions"},
		{[]string{"scenario", "create", "x", "--retention-max-age", "-1s"}, 2, "max age"},
		{[]string{"scenario", "create", "x", "--retention-max-bytes", "-5"}, 2, "max bytes"},
		{[]string{"scenario", "create"}, 2, "accepts 1 arg"},
		{[]string{"scenario", "show", "x", "y"}, 2, "accepts 1 arg"},
		{[]string{"totals", "--batch", "x"}, 2, "unknown flag: --batch"},
		{[]string{"scenario", "show", "nosuch"}, 1, "not found"},
		{[]string{"trace", "nosuch-id"}, 1, ""},
	}
	cases := map[string]struct {
		env   map[string]string
		cases []c
	}{
		"nats": {natsEnv, append([]c{
			{[]string{"scenario", "create", "x", "--kafka-partitions", "3"}, 2, "--kafka-partitions applies only to Kafka"},
			{[]string{"scenario", "create", "x", "--kafka-replication", "3"}, 2, "--kafka-replication applies only to Kafka"},
			{[]string{"publish", "--dry-run", "--kafka-sasl-user", "u"}, 2, "--kafka-sasl-user applies only to Kafka"},
			{[]string{"scenario", "create", "x", "--ack-wait", "50ms"}, 2, "ack wait"},
			{[]string{"scenario", "ls", "--nats-tls-cert", "c.pem"}, 2, "certificate and key go together"},
			{[]string{"scenario", "create", "x", "--replicas", "3"}, 2, "replicas 3: the NATS server at nats://127.0.0.1"},
			{[]string{"scenario", "create", "x", "--replicas", "-1"}, 2, "--replicas -1: want 0 or a positive count"},
		}, both...)},
		"kafka": {kafkaEnv, append([]c{
			{[]string{"scenario", "create", "x", "--dedup-window", "10s"}, 2, "--dedup-window does not apply to Kafka"},
			{[]string{"replay", "--history", "--ack-wait", "5s"}, 2, "--ack-wait does not apply to Kafka"},
			{[]string{"run", "--nats-listen", "127.0.0.1:0"}, 2, "--nats-listen does not apply to Kafka"},
			{[]string{"totals", "--nats-url", "nats://127.0.0.1:4222"}, 2, "--nats-url does not apply to Kafka"},
			{[]string{"scenario", "create", "x", "--kafka-partitions", "0"}, 2, "--kafka-partitions 0"},
			{[]string{"scenario", "ls", "--kafka-tls-cert", "c.pem"}, 2, "certificate and key go together"},
			{[]string{"scenario", "create", "x", "--replicas", "5"}, 2, "replicas 5 exceed the Kafka cluster's 3 brokers"},
			{[]string{"scenario", "create", "x", "--replicas", "2", "--kafka-replication", "3"}, 2, "--replicas 2 and --kafka-replication 3 disagree"},
		}, both...)},
	}
	for name, bc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, c := range bc.cases {
				code, out, stderr := run(t.Context(), "", bc.env, c.args...)
				if code != c.code || !strings.Contains(stderr, c.want) {
					t.Errorf("cascade %s on %s: exit %d, want %d with %q:\n%s%s", strings.Join(c.args, " "), name, code, c.code, c.want, out, stderr)
				}
			}
		})
	}
}

// The owner's settings stand: a client command (publish) neither takes nor resets them, and
// scenario show prints what the owner recorded.
func TestClientDoesNotChangeTheOwnersDedupWindow(t *testing.T) {
	t.Parallel()
	ns, env := startBroker(t)
	if code, out, stderr := run(t.Context(), "", env, "scenario", "create", "own", "--dedup-window", "10s", "--ack-wait", "3s"); code != 0 {
		t.Fatalf("scenario create: exit %d %s %s", code, out, stderr)
	}
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish", "--scenario", "own"); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	st, err := conformance.JetStream(t, ns.ClientURL()).Stream(t.Context(), "CASCADE_OWN")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Duplicates; got != 10*time.Second {
		t.Fatalf("de-dup window %s after a client published, want the owner's 10s", got)
	}
	code, out, stderr := run(t.Context(), "", env, "scenario", "show", "own")
	if code != 0 || !strings.Contains(out, `"dedup_window": "10s"`) || !strings.Contains(out, `"ack_wait": "3s"`) {
		t.Fatalf("scenario show: exit %d, want the recorded config:\n%s%s", code, out, stderr)
	}
}

// run is the owner of base: its --dedup-window and --ack-wait hold on the stream and on the
// layers' consumers after client commands have connected and published.
func TestRunsStorageSettingsSurviveClients(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		run(ctx, "", nil, "run", "--data-dir", t.TempDir(), "--nats-listen", "127.0.0.1:"+port, "--dedup-window", "10s", "--ack-wait", "3s", "--log-format", "json", "--http-listen", "")
	})
	url := "nats://127.0.0.1:" + port
	env := map[string]string{"CASCADE_NATS_URL": url}
	consumer := event.Chain.ConsumerName("base")
	var js jetstream.JetStream
	conformance.Eventually(t, 20*time.Second, "run to serve base", func() error {
		if code, _, stderr := run(t.Context(), "", env, "scenario", "show", "base"); code != 0 {
			return fmt.Errorf("scenario show: exit %d: %s", code, stderr)
		}
		if js == nil {
			js = conformance.JetStream(t, url)
		}
		st, err := js.Stream(t.Context(), "CASCADE_BASE")
		if err != nil {
			return err
		}
		_, err = st.Consumer(t.Context(), consumer)
		return err
	})
	if code, out, stderr := run(t.Context(), adoptionUS, env, "publish"); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	st, err := conformance.JetStream(t, url).Stream(t.Context(), "CASCADE_BASE")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Duplicates; got != 10*time.Second {
		t.Fatalf("de-dup window %s after a client published, want run's 10s", got)
	}
	c, err := st.Consumer(t.Context(), consumer)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.AckWait; got != 3*time.Second {
		t.Fatalf("the chain has ack wait %s, want run's 3s", got)
	}
	if code, out, _ := run(t.Context(), "", env, "scenario", "show", "base"); code != 0 || !strings.Contains(out, `"dedup_window": "10s"`) {
		t.Fatalf("scenario show base: exit %d without run's config:\n%s", code, out)
	}
}

// On Kafka the owner's retention becomes the topics' retention.ms and retention.bytes, and a
// later owner's settings replace it on the existing topics.
func TestKafkaRetentionIsTopicConfig(t *testing.T) {
	t.Parallel()
	addrs := kafkatest.Cluster(t)
	env := map[string]string{"CASCADE_KAFKA_BROKERS": strings.Join(addrs, ",")}
	if code, out, stderr := run(t.Context(), "", env, "scenario", "create", "ret", "--retention-max-age", "1h"); code != 0 {
		t.Fatalf("scenario create: exit %d %s %s", code, out, stderr)
	}
	if got := topicConfig(t, addrs, "cascade.ret.signal.chips"); got["retention.ms"] != "3600000" {
		t.Fatalf("retention.ms %q after --retention-max-age 1h, want 3600000", got["retention.ms"])
	}
	if code, out, stderr := run(t.Context(), "", env, "scenario", "create", "ret", "--retention-max-bytes", "1000000"); code != 0 {
		t.Fatalf("scenario create again: exit %d %s %s", code, out, stderr)
	}
	got := topicConfig(t, addrs, "cascade.ret.demand.grid")
	if got["retention.bytes"] != "1000000" || got["retention.ms"] == "3600000" {
		t.Fatalf("after the owner's new settings: retention.bytes %q (want 1000000), retention.ms %q (want the cluster's default)", got["retention.bytes"], got["retention.ms"])
	}
	if code, out, _ := run(t.Context(), "", env, "scenario", "show", "ret"); code != 0 || !strings.Contains(out, `"max_bytes": 1000000`) || strings.Contains(out, "max_age") {
		t.Fatalf("scenario show: exit %d, want the owner's latest config recorded:\n%s", code, out)
	}
}

func topicConfig(t *testing.T, addrs []string, topic string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c := &kafkago.Client{Addr: kafkago.TCP(addrs...)}
	resp, err := c.DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{Resources: []kafkago.DescribeConfigRequestResource{
		{ResourceType: kafkago.ResourceTypeTopic, ResourceName: topic},
	}})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range resp.Resources {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
		for _, e := range r.ConfigEntries {
			out[e.ConfigName] = e.ConfigValue
		}
	}
	return out
}

// Commands that never connect have no broker flags.
func TestOfflineCommandsHaveNoBrokerFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"calc", "--help"}, {"schemas", "--help"}, {"coefficients", "validate", "--help"}, {"--version"}} {
		code, out, stderr := run(t.Context(), "", nil, args...)
		if code != 0 {
			t.Fatalf("cascade %s: exit %d %s", strings.Join(args, " "), code, stderr)
		}
		for _, flag := range []string{"--nats-url", "--kafka-brokers", "--nats-creds", "--kafka-partitions", "--dedup-window", "--ack-wait", "--retention-max-age"} {
			if strings.Contains(out, flag) {
				t.Errorf("cascade %s lists %s:\n%s", strings.Join(args, " "), flag, out)
			}
		}
	}
	if code, _, stderr := run(t.Context(), "", nil, "calc", "--nats-url", "nats://x:4222"); code != 2 || !strings.Contains(stderr, "unknown flag: --nats-url") {
		t.Fatalf("calc --nats-url: exit %d %s, want 2 refusing the flag", code, stderr)
	}
}
