package nats_test

// These tests load compose.yaml the way `docker compose` does (compose-go), and the
// Prometheus rules and the Grafana dashboard beside it, offline, and check what the cascade
// deployment relies on.

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/layercake/cascade/internal/deploytest"
	"github.com/layercake/cascade/internal/event"
)

var secrets = []string{"CASCADE_API_TOKEN=test-token", "CASCADE_NATS_PASSWORD=test-password"}

func load(t *testing.T, env ...string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"compose.yaml"}, cli.WithName("cascade-nats-test"), cli.WithEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func mustLoad(t *testing.T) *types.Project {
	t.Helper()
	p, err := load(t, secrets...)
	if err != nil {
		t.Fatalf("compose.yaml does not load: %v", err)
	}
	return p
}

func envKeys(s types.ServiceConfig) []string {
	var keys []string
	for k := range s.Environment {
		keys = append(keys, k)
	}
	return keys
}

// Three JetStream nodes routed to each other, each stage a service of two replicas running
// a real cascade command, the api owning scenario base on 3 replicas, the view service,
// Prometheus and Grafana.
func TestComposeNATSCluster(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	want := []string{"api", "grafana", "nats-1", "nats-2", "nats-3", "prometheus", "view"}
	for _, l := range event.ConsumerLayers {
		want = append(want, "consume-"+string(l))
	}
	slices.Sort(want)
	got := p.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	routes := "--routes=nats://nats-1:6222,nats://nats-2:6222,nats://nats-3:6222"
	for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
		s := p.Services[n]
		cmd := []string(s.Command)
		if !strings.HasPrefix(s.Image, "nats:") || !slices.Contains(cmd, "--jetstream") || !slices.Contains(cmd, routes) ||
			!slices.Contains(cmd, "--name="+n) || !slices.Contains(cmd, "--cluster_name=cascade") || !slices.Contains(cmd, "--pass=test-password") {
			t.Errorf("%s: image %s command %v; want the official nats image, JetStream, its name, the cluster's routes and the password from the environment", n, s.Image, cmd)
		}
		if s.HealthCheck == nil || !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "js-enabled-only=true") {
			t.Errorf("%s: healthcheck %+v; want the JetStream health endpoint", n, s.HealthCheck)
		}
	}
	for _, l := range event.ConsumerLayers {
		name := "consume-" + string(l)
		s := p.Services[name]
		if s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 2 {
			t.Errorf("%s: want deploy.replicas 2", name)
		}
		if c := []string(s.Command); !slices.Equal(c, []string{"consume", "--layer", string(l)}) {
			t.Errorf("%s: command %v", name, c)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s: publishes ports %v; its replicas would collide", name, s.Ports)
		}
	}
	stages := map[string][]event.Stage{}
	for name, s := range p.Services {
		if s.Image != "cascade:local" {
			continue
		}
		deploytest.CheckCommand(t, name, s.Command, envKeys(s))
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		stages[name] = deploytest.Stages(t, name, s.Command, env)
		if got := *s.Environment["CASCADE_NATS_URL"]; got != "nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222" {
			t.Errorf("%s: CASCADE_NATS_URL %q, want every node", name, got)
		}
		if *s.Environment["CASCADE_NATS_PASSWORD"] != "test-password" || *s.Environment["CASCADE_API_TOKEN"] != "test-token" {
			t.Errorf("%s: credentials not from the environment", name)
		}
		for _, n := range []string{"nats-1", "nats-2", "nats-3"} {
			if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: does not wait for %s to be healthy", name, n)
			}
		}
	}
	// The workers, the api's stages and the view together: one member more of each layer's
	// consumer, no stage overlapping another (which cascade would refuse on the broker).
	deploytest.CheckTiling(t, stages)
	if len(stages["api"]) != len(event.ConsumerLayers) || len(stages["view"]) != 0 {
		t.Errorf("api runs stages %v, view %v; want the five per-layer stages on api, none on view", stages["api"], stages["view"])
	}
	if api := []string(p.Services["api"].Command); !slices.Contains(api, "--replicas") || api[slices.Index(api, "--replicas")+1] != "3" {
		t.Errorf("api: command %v; want --replicas 3", api)
	}
}

// The view service: `cascade view` keeping its index in a volume of its own, serving on the
// address the others do (with the token), published on the host's loopback apart from the
// api's, and checked healthy by `cascade healthcheck` on /readyz.
func TestComposeView(t *testing.T) {
	t.Parallel()
	p := mustLoad(t)
	v, api := p.Services["view"], p.Services["api"]
	cmd := []string(v.Command)
	if len(cmd) < 3 || cmd[0] != "view" || !slices.Contains(cmd, "--index-dir") {
		t.Fatalf("view: command %v; want cascade view --index-dir DIR", cmd)
	}
	dir := cmd[slices.Index(cmd, "--index-dir")+1]
	var volume string
	for _, m := range v.Volumes {
		if m.Type == types.VolumeTypeVolume && strings.HasPrefix(dir+"/", m.Target+"/") {
			volume = m.Source
		}
	}
	for _, m := range api.Volumes {
		if volume != "" && m.Source == volume {
			t.Errorf("view shares volume %s with api; each view needs its own index", volume)
		}
	}
	if volume == "" {
		t.Errorf("view: --index-dir %s is on no named volume (%+v)", dir, v.Volumes)
	}
	if got := *v.Environment["CASCADE_HTTP_LISTEN"]; got != "0.0.0.0:8080" || *v.Environment["CASCADE_API_TOKEN"] != "test-token" {
		t.Errorf("view: CASCADE_HTTP_LISTEN %q and the token; want 0.0.0.0:8080 with the token from the environment", got)
	}
	if len(v.Ports) != 1 || v.Ports[0].HostIP != "127.0.0.1" || v.Ports[0].Target != 8080 || v.Ports[0].Published == api.Ports[0].Published {
		t.Errorf("view: ports %+v; want container port 8080 on a loopback port of its own", v.Ports)
	}
	hc := v.HealthCheck
	if hc == nil || len(hc.Test) < 3 || hc.Test[0] != "CMD" || hc.Test[1] != "/usr/local/bin/cascade" {
		t.Fatalf("view: healthcheck %+v; want cascade healthcheck", hc)
	}
	deploytest.CheckCommand(t, "view healthcheck", hc.Test[2:], []string{"CASCADE_HTTP_LISTEN"})
	if hc.Test[2] != "healthcheck" {
		t.Errorf("view: healthcheck runs %v", hc.Test[1:])
	}
}

// Without the credentials in the environment, compose refuses to start: the file holds none.
func TestComposeRequiresCredentials(t *testing.T) {
	t.Parallel()
	for i, missing := range []string{"CASCADE_NATS_PASSWORD", "CASCADE_API_TOKEN"} {
		if _, err := load(t, secrets[i]); err == nil || !strings.Contains(err.Error(), "set "+missing) {
			t.Errorf("loaded without %s (err %v); want a refusal naming it", missing, err)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// The alert rules: promtool accepts them where it is installed, they decode strictly, each
// has a severity and a summary, the three the runbook names are there, and every metric they
// query is one cascade serves.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	if promtool, err := exec.LookPath("promtool"); err != nil {
		t.Log("promtool not installed (apt-get install prometheus): checking the rules' structure only")
	} else if out, err := exec.Command(promtool, "check", "rules", "prometheus/alerts.yml").CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
	raw, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	served := deploytest.Metrics(t)
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("%s: want a severity label and a summary", r.Alert)
			}
			deploytest.CheckQuery(t, r.Alert, r.Expr, served)
		}
	}
	for _, want := range []string{"CascadeDeadLetters", "CascadeConsumerLag", "CascadeNoProgress"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s in %v", want, alerts)
		}
	}
	// Prometheus scrapes every cascade service of the compose file.
	prom, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range mustLoad(t).Services {
		if s.Image == "cascade:local" && !strings.Contains(string(prom), " "+name+",") && !strings.Contains(string(prom), ", "+name+"]") && !strings.Contains(string(prom), "["+name+",") {
			t.Errorf("prometheus.yml does not scrape service %s", name)
		}
	}
}

// dashboard is the part of Grafana's dashboard model the file must have right.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		GridPos *struct {
			H, W, X, Y int
		} `json:"gridPos"`
		Datasource struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// The dashboard has Grafana's required fields, panels with unique ids on the 24-column grid
// querying the provisioned data source, and shows rates, lag, dead letters and demand by
// region from metrics cascade serves.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("grafana/dashboards/cascade.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("cascade.json: %v", err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 {
		t.Fatalf("uid %q title %q schemaVersion %d, %d panels: want all set (schemaVersion >= 36)", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	ds, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	served := deploytest.Metrics(t)
	ids := map[int]bool{}
	var all string
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or taken", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type == "" || p.GridPos == nil || p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
			t.Errorf("panel %q: type %q gridPos %+v; want a type and a place on the 24-column grid", p.Title, p.Type, p.GridPos)
		}
		if p.Datasource.Type != "prometheus" || !strings.Contains(string(ds), "uid: "+p.Datasource.UID+"\n") {
			t.Errorf("panel %q: data source %+v is not the provisioned one", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.RefID == "" {
				t.Errorf("panel %q: a query without refId", p.Title)
			}
			deploytest.CheckQuery(t, p.Title, q.Expr, served)
			all += q.Expr + "\n"
		}
	}
	for _, want := range []string{"rate(cascade_events_in_total", "rate(cascade_events_out_total", "cascade_consumer_pending", "cascade_dlq_total", "sum by (region"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}
