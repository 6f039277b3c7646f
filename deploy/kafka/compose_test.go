package kafka_test

// These tests load compose.yaml the way `docker compose` does (compose-go: schema validation,
// interpolation, merge keys, consistency of references), offline and without a Docker engine,
// and check what the cascade deployment relies on.

import (
	"context"
	"encoding/base64"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/deploytest"
	"github.com/layercake/cascade/internal/event"
)

const composeFile = "compose.yaml"

// testToken stands in for the operator's CASCADE_API_TOKEN; it must reach the api service
// through interpolation, which proves the file does not carry a token of its own.
const testToken = "test-token-from-the-environment"

var layers = []string{"application", "model", "infrastructure", "chips", "energy"}

// load loads file with exactly env as the environment (not the test process's, so a token set
// in CI cannot hide a missing one).
func load(t *testing.T, file string, env ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{file}, cli.WithName("cascade-kafka-test"), cli.WithEnv(env))
	if err != nil {
		t.Fatalf("project options: %v", err)
	}
	return opts.LoadProject(context.Background())
}

func mustLoad(t *testing.T) *types.Project {
	t.Helper()
	p, err := load(t, composeFile, "CASCADE_API_TOKEN="+testToken)
	if err != nil {
		t.Fatalf("%s does not load: %v", composeFile, err)
	}
	return p
}

func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// brokers are the services running the apache/kafka image, by name.
func brokers(p *types.Project) map[string]types.ServiceConfig {
	out := map[string]types.ServiceConfig{}
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "apache/kafka:") {
			out[name] = s
		}
	}
	return out
}

// listener returns the host:port of the named listener in a Kafka listener list
// ("INTERNAL://kafka-1:9092,EXTERNAL://…").
func listener(list, name string) (string, bool) {
	for l := range strings.SplitSeq(list, ",") {
		if n, addr, ok := strings.Cut(strings.TrimSpace(l), "://"); ok && n == name {
			return addr, true
		}
	}
	return "", false
}

func TestComposeLoads(t *testing.T) {
	p := mustLoad(t)
	want := []string{"api", "consume-application", "consume-chips", "consume-energy", "consume-infrastructure",
		"consume-model", "kafka-1", "kafka-2", "kafka-3"}
	got := p.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	if len(p.DisabledServices) != 0 {
		t.Errorf("services behind a profile, not started by a plain `up`: %v", slices.Collect(maps.Keys(p.DisabledServices)))
	}

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range p.Services {
		if _, ok := brokers(p)[name]; ok {
			continue
		}
		if s.Image != "cascade:local" {
			t.Errorf("%s: image %q, want cascade:local", name, s.Image)
		}
		if s.Build == nil {
			t.Errorf("%s: no build section", name)
			continue
		}
		if s.Build.Context != root || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("%s: build context %q dockerfile %q, want the repository root %q and deploy/Dockerfile",
				name, s.Build.Context, s.Build.Dockerfile, root)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}
	}
}

func TestComposeKafkaClusterKRaft(t *testing.T) {
	p := mustLoad(t)
	bs := brokers(p)
	if len(bs) != 3 {
		t.Fatalf("%d apache/kafka services, want 3", len(bs))
	}

	pinned := regexp.MustCompile(`^apache/kafka:(3\.9\.\d+|4\.\d+\.\d+)$`)
	ids := map[string]string{} // node id -> service
	var clusterID, voters string
	for name, s := range bs {
		if !pinned.MatchString(s.Image) {
			t.Errorf("%s: image %q, want apache/kafka pinned to a 3.9.x or 4.x release", name, s.Image)
		}
		roles := strings.Split(env(s, "KAFKA_PROCESS_ROLES"), ",")
		slices.Sort(roles)
		if !slices.Equal(roles, []string{"broker", "controller"}) {
			t.Errorf("%s: KAFKA_PROCESS_ROLES %q, want broker,controller (combined KRaft node)", name, env(s, "KAFKA_PROCESS_ROLES"))
		}
		id := env(s, "KAFKA_NODE_ID")
		if n, err := strconv.Atoi(id); err != nil || n < 0 {
			t.Errorf("%s: KAFKA_NODE_ID %q is not a node id", name, id)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share KAFKA_NODE_ID %s", name, other, id)
		}
		ids[id] = name

		for _, key := range []string{"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "KAFKA_DEFAULT_REPLICATION_FACTOR"} {
			if env(s, key) != "3" {
				t.Errorf("%s: %s %q, want 3", name, key, env(s, key))
			}
		}

		// Same cluster id and quorum everywhere.
		if clusterID == "" {
			clusterID, voters = env(s, "CLUSTER_ID"), env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS")
		}
		if env(s, "CLUSTER_ID") != clusterID {
			t.Errorf("%s: CLUSTER_ID %q, another broker has %q", name, env(s, "CLUSTER_ID"), clusterID)
		}
		if env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS") != voters {
			t.Errorf("%s: KAFKA_CONTROLLER_QUORUM_VOTERS %q, another broker has %q", name, env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS"), voters)
		}

		// Listeners: the controller listener exists, and the inter-broker listener is advertised
		// under the service's own name (what the cascade services are given).
		ctrl := env(s, "KAFKA_CONTROLLER_LISTENER_NAMES")
		if _, ok := listener(env(s, "KAFKA_LISTENERS"), ctrl); ctrl == "" || !ok {
			t.Errorf("%s: controller listener %q not in KAFKA_LISTENERS %q", name, ctrl, env(s, "KAFKA_LISTENERS"))
		}
		inter := env(s, "KAFKA_INTER_BROKER_LISTENER_NAME")
		if addr, _ := listener(env(s, "KAFKA_ADVERTISED_LISTENERS"), inter); addr != name+":9092" {
			t.Errorf("%s: advertised %s listener %q, want %s:9092", name, inter, addr, name)
		}

		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", name)
		}
		if len(s.Volumes) == 0 || s.Volumes[0].Target != env(s, "KAFKA_LOG_DIRS") {
			t.Errorf("%s: KAFKA_LOG_DIRS %q is not on a volume", name, env(s, "KAFKA_LOG_DIRS"))
		}
	}
	if b, err := base64.RawURLEncoding.DecodeString(clusterID); err != nil || len(b) != 16 {
		t.Errorf("CLUSTER_ID %q is not a base64url UUID (kafka-storage.sh random-uuid)", clusterID)
	}

	// The quorum: 3 voters, exactly the brokers' node ids, each at its own service's controller port.
	vs := strings.Split(voters, ",")
	if len(vs) != 3 {
		t.Fatalf("KAFKA_CONTROLLER_QUORUM_VOTERS %q: %d voters, want 3", voters, len(vs))
	}
	seen := map[string]bool{}
	for _, v := range vs {
		id, addr, ok := strings.Cut(v, "@")
		name, ok2 := ids[id]
		if !ok || !ok2 || seen[id] {
			t.Errorf("voter %q: not one of the node ids %v, or named twice", v, ids)
			continue
		}
		seen[id] = true
		s := bs[name]
		if ctrl, _ := listener(env(s, "KAFKA_LISTENERS"), env(s, "KAFKA_CONTROLLER_LISTENER_NAMES")); addr != name+ctrl {
			t.Errorf("voter %q: want %s@%s%s (node %s's controller listener)", v, id, name, ctrl, id)
		}
	}
}

func TestComposeLayerServices(t *testing.T) {
	p := mustLoad(t)
	bs := brokers(p)
	var want []string
	for name := range bs {
		want = append(want, name+":9092")
	}
	slices.Sort(want)

	for _, layer := range layers {
		t.Run(layer, func(t *testing.T) {
			var found []string
			for name, s := range p.Services {
				if len(s.Entrypoint) == 0 && slices.Equal([]string(s.Command), []string{"consume", "--layer", layer}) {
					found = append(found, name)
				}
			}
			if len(found) != 1 {
				t.Fatalf("services running `consume --layer %s`: %v, want one", layer, found)
			}
			s := p.Services[found[0]]
			got := strings.Split(env(s, "CASCADE_KAFKA_BROKERS"), ",")
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: CASCADE_KAFKA_BROKERS %v, want all brokers %v", s.Name, got, want)
			}
			for b := range bs {
				if d, ok := s.DependsOn[b]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("%s: does not wait for %s to be healthy (%+v)", s.Name, b, d)
				}
			}
			if len(s.Ports) != 0 || s.ContainerName != "" {
				t.Errorf("%s: published ports or a container_name would stop `--scale %s=3`", s.Name, s.Name)
			}
		})
	}

	api, ok := p.Services["api"]
	if !ok {
		t.Fatal("no api service")
	}
	if len(api.Command) == 0 || api.Command[0] != "run" || !slices.Contains(api.Command, "0.0.0.0:8080") {
		t.Errorf("api: command %q, want `run --http-listen 0.0.0.0:8080`", api.Command)
	}
	if env(api, "CASCADE_KAFKA_BROKERS") != env(p.Services["consume-chips"], "CASCADE_KAFKA_BROKERS") {
		t.Errorf("api: CASCADE_KAFKA_BROKERS %q differs from the layers'", env(api, "CASCADE_KAFKA_BROKERS"))
	}
	if len(api.Ports) != 1 || api.Ports[0].HostIP != "127.0.0.1" || api.Ports[0].Published != "8080" || api.Ports[0].Target != 8080 {
		t.Errorf("api: ports %+v, want 127.0.0.1:8080:8080 only", api.Ports)
	}
}

// The api's stages are the consume services' own (run's default chain would overlap them and
// be refused on the broker): every layer in one stage, every cascade command parsed by cascade.
func TestComposeStagesTile(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	stages := map[string][]event.Stage{}
	for name, s := range p.Services {
		if s.Image != "cascade:local" || len(s.Command) == 0 {
			continue
		}
		vars := map[string]string{}
		for k := range s.Environment {
			vars[k] = env(s, k)
		}
		// The shared environment also carries the owner's storage settings, which the
		// consume services ignore; only the command is checked here.
		deploytest.CheckCommand(t, name, s.Command, nil)
		stages[name] = deploytest.Stages(t, name, s.Command, vars)
	}
	deploytest.CheckTiling(t, stages)
	if len(stages["api"]) != len(layers) {
		t.Errorf("api runs stages %v; want the five per-layer stages", stages["api"])
	}
}

// secretKey names settings that hold credentials.
var secretKey = regexp.MustCompile(`(?i)(token|password|passwd|secret|credential|creds|private|sasl|api[_-]?key)`)

// interpolated is a value that only references the environment: ${VAR} or ${VAR:?message}.
var interpolated = regexp.MustCompile(`^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$`)

func TestComposeNoLiteralSecrets(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	checkValue := func(n *yaml.Node, key, value string) {
		if secretKey.MatchString(key) && !interpolated.MatchString(value) {
			t.Errorf("line %d: %s is written in the file (%q); take it from the environment: ${VAR:?…}", n.Line, key, value)
		}
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if v.Kind == yaml.ScalarNode && k.Value != "<<" {
					checkValue(v, k.Value, v.Value)
				}
				walk(v)
			}
		case yaml.SequenceNode:
			for i, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					walk(item)
					continue
				}
				// environment as a list ("KEY=value") and commands ("--api-token", "value" or
				// "--api-token=value").
				if k, v, ok := strings.Cut(item.Value, "="); ok {
					checkValue(item, k, v)
				} else if strings.HasPrefix(item.Value, "--") && secretKey.MatchString(item.Value) {
					v := ""
					if i+1 < len(n.Content) {
						v = n.Content[i+1].Value
					}
					checkValue(item, item.Value, v)
				}
			}
		default:
			for _, c := range n.Content {
				walk(c)
			}
		}
	}
	walk(&doc)

	// And the token the api service gets is the one from the environment.
	if got := env(mustLoad(t).Services["api"], "CASCADE_API_TOKEN"); got != testToken {
		t.Errorf("api: CASCADE_API_TOKEN %q, want the value from the environment", got)
	}
}

func TestComposeRequiresAPIToken(t *testing.T) {
	_, err := load(t, composeFile)
	if err == nil || !strings.Contains(err.Error(), "set CASCADE_API_TOKEN") {
		t.Fatalf("loaded without CASCADE_API_TOKEN (err %v), want a refusal asking for it", err)
	}
}

// TestComposeRefusesBrokenCopies loads copies of compose.yaml with one mistake each (written to
// a temporary directory): the loader must refuse them, so the tests above would catch the same
// mistake in the real file.
func TestComposeRefusesBrokenCopies(t *testing.T) {
	orig, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, wantErr string
	}{
		{"unchanged", "", "", ""},
		{"misspelt key", `    command: ["consume", "--layer", "chips"]`, `    comand: ["consume", "--layer", "chips"]`, "comand"},
		{"misspelt nested key", "    start_period: 30s", "    start_perod: 30s", "start_perod"},
		{"undefined service in depends_on", "    kafka-3: {condition: service_healthy}", "    kafka-4: {condition: service_healthy}", "kafka-4"},
		{"undefined volume", `volumes: ["kafka-2:/var/lib/kafka/data"]`, `volumes: ["kafka-9:/var/lib/kafka/data"]`, "kafka-9"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := string(orig)
			if c.old != "" {
				if n := strings.Count(text, c.old); n != 1 {
					t.Fatalf("%q occurs %d times in %s, want once", c.old, n, composeFile)
				}
				text = strings.Replace(text, c.old, c.new, 1)
			}
			file := filepath.Join(t.TempDir(), "compose.yaml")
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := load(t, file, "CASCADE_API_TOKEN="+testToken)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("the unchanged copy does not load: %v", err)
			case c.wantErr != "" && err == nil:
				t.Fatal("loaded; want a refusal")
			case c.wantErr != "" && !strings.Contains(err.Error(), c.wantErr):
				t.Errorf("error %q does not name %q", err, c.wantErr)
			case err != nil:
				t.Logf("refused: %v", err)
			}
		})
	}
}
