package k8s_test

// These tests build the kustomization offline with kustomize's own engine (krusty, what
// `kubectl apply -k` runs), decode every object strictly into its Kubernetes API type (an
// unknown or misspelt field fails), and check what cascade relies on.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/layercake/cascade/internal/coefficients"
	"github.com/layercake/cascade/internal/deploytest"
	"github.com/layercake/cascade/internal/event"
)

// objects are the built manifests, decoded strictly, by kind and name.
type objects struct {
	deployments map[string]*appsv1.Deployment
	statefuls   map[string]*appsv1.StatefulSet
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	pdbs        map[string]*policyv1.PodDisruptionBudget
	configs     map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	services    map[string]*corev1.Service
	namespaces  map[string]*corev1.Namespace
}

func build(t *testing.T, dir string) objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	o := objects{map[string]*appsv1.Deployment{}, map[string]*appsv1.StatefulSet{}, map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		map[string]*policyv1.PodDisruptionBudget{}, map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}, map[string]*corev1.Service{}, map[string]*corev1.Namespace{}}
	for _, r := range rm.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var obj interface{ GetName() string }
		switch kind := r.GetApiVersion() + "/" + r.GetKind(); kind {
		case "apps/v1/Deployment":
			obj = decode(t, raw, o.deployments)
		case "apps/v1/StatefulSet":
			obj = decode(t, raw, o.statefuls)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			obj = decode(t, raw, o.hpas)
		case "policy/v1/PodDisruptionBudget":
			obj = decode(t, raw, o.pdbs)
		case "v1/ConfigMap":
			obj = decode(t, raw, o.configs)
		case "v1/Secret":
			obj = decode(t, raw, o.secrets)
		case "v1/Service":
			obj = decode(t, raw, o.services)
		case "v1/Namespace":
			obj = decode(t, raw, o.namespaces)
		default:
			t.Errorf("unexpected object %s %s", kind, r.GetName())
			continue
		}
		if ns := obj.(interface{ GetNamespace() string }).GetNamespace(); r.GetKind() != "Namespace" && ns != "cascade" {
			t.Errorf("%s %s: namespace %q, want cascade", r.GetKind(), obj.GetName(), ns)
		}
	}
	return o
}

// decode strictly decodes raw into a new T and files it under its name.
func decode[T any, P interface {
	*T
	GetName() string
}](t *testing.T, raw []byte, into map[string]P) P {
	t.Helper()
	p := P(new(T))
	if err := yaml.UnmarshalStrict(raw, p); err != nil {
		t.Fatalf("%T: %v\n%s", p, err, raw)
	}
	into[p.GetName()] = p
	return p
}

func envNames(c corev1.Container) []string {
	var names []string
	for _, e := range c.Env {
		names = append(names, e.Name)
	}
	return names
}

// A Deployment per stage (two replicas, a real cascade command, probes on /healthz and
// /readyz, non-root), each with an HPA on its consumer lag and a PodDisruptionBudget, the
// stages of all Deployments tiling the layers; NATS as a 3-node StatefulSet; credentials from
// the Secret; coefficients from the ConfigMap.
func TestKustomization(t *testing.T) {
	t.Parallel()
	o := build(t, ".")
	if len(o.namespaces) != 1 || o.namespaces["cascade"] == nil {
		t.Errorf("namespaces %v, want cascade", o.namespaces)
	}
	sec := o.secrets["cascade-credentials"]
	if sec == nil || sec.StringData["nats-password"] == "" || sec.StringData["api-token"] == "" {
		t.Fatalf("Secret cascade-credentials with nats-password and api-token: %+v", sec)
	}
	var coefMap string
	for name, cm := range o.configs {
		if strings.HasPrefix(name, "cascade-coefficients-") {
			coefMap = name
			if _, err := coefficients.Parse([]byte(cm.Data["coefficients.yaml"])); err != nil {
				t.Errorf("ConfigMap %s: coefficients.yaml does not load: %v", name, err)
			}
		}
	}
	if coefMap == "" {
		t.Fatal("no cascade-coefficients ConfigMap")
	}

	ns := o.statefuls["nats"]
	if ns == nil || *ns.Spec.Replicas != 3 || ns.Spec.ServiceName != "nats" || len(ns.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("StatefulSet nats: want 3 replicas, the headless Service nats and a volume claim per node")
	}
	if svc := o.services["nats"]; svc == nil || svc.Spec.ClusterIP != "None" {
		t.Errorf("Service nats must be headless (routes to nats-N.nats)")
	}
	natsConf := o.configs["nats-config"].Data["nats.conf"]
	for i := range 3 {
		if !strings.Contains(natsConf, fmt.Sprintf("nats://nats-%d.nats:6222", i)) {
			t.Errorf("nats.conf has no route to nats-%d", i)
		}
	}
	if !strings.Contains(natsConf, "jetstream") || !strings.Contains(natsConf, "password: $NATS_PASSWORD") {
		t.Errorf("nats.conf: want JetStream and the password from the Secret:\n%s", natsConf)
	}

	served := deploytest.Metrics(t)
	want := []string{"api", "view"}
	for _, l := range event.ConsumerLayers {
		want = append(want, "consume-"+string(l))
	}
	var got []string
	for name := range o.deployments {
		got = append(got, name)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Deployments %v, want %v", got, want)
	}
	stages := map[string][]event.Stage{}
	for name, d := range o.deployments {
		pod := d.Spec.Template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			t.Errorf("%s: not runAsNonRoot", name)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(pod.Containers))
		}
		c := pod.Containers[0]
		deploytest.CheckCommand(t, name, c.Args, envNames(c))
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		stages[name] = deploytest.Stages(t, name, c.Args, env)
		if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: want a read-only root filesystem", name)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
			c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: want a liveness probe on /healthz and a readiness probe on /readyz", name)
		}
		var listen string
		secretRefs := map[string]bool{}
		for _, e := range c.Env {
			if e.Name == "CASCADE_HTTP_LISTEN" {
				listen = e.Value
			}
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "cascade-credentials" {
				secretRefs[e.Name] = true
			}
		}
		if port := c.Ports[0]; listen != fmt.Sprintf("0.0.0.0:%d", port.ContainerPort) || c.LivenessProbe.HTTPGet.Port.StrVal != port.Name {
			t.Errorf("%s: listens on %q, probes port %v, container port %+v: want them to agree", name, listen, c.LivenessProbe.HTTPGet.Port, port)
		}
		if !secretRefs["CASCADE_NATS_PASSWORD"] || !secretRefs["CASCADE_API_TOKEN"] {
			t.Errorf("%s: NATS password and API token must come from the Secret, got %v", name, secretRefs)
		}
		if name == "api" {
			if !slices.Contains(c.Args, "--replicas") || c.Args[slices.Index(c.Args, "--replicas")+1] != "3" {
				t.Errorf("api: args %v; want --replicas 3", c.Args)
			}
			mounted := false
			for _, v := range pod.Volumes {
				mounted = mounted || v.ConfigMap != nil && v.ConfigMap.Name == coefMap
			}
			if !mounted {
				t.Errorf("api: the coefficients ConfigMap %s is not mounted", coefMap)
			}
			continue
		}
		if name == "view" {
			continue // TestKustomizationView
		}
		layer := strings.TrimPrefix(name, "consume-")
		if !slices.Equal(c.Args, []string{"consume", "--layer", layer}) || *d.Spec.Replicas != 2 {
			t.Errorf("%s: args %v, %d replicas; want consume --layer %s on 2", name, c.Args, *d.Spec.Replicas, layer)
		}
		h := o.hpas[name]
		if h == nil || h.Spec.ScaleTargetRef.Name != name || h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || len(h.Spec.Metrics) != 1 {
			t.Errorf("%s: want an HPA on it with at least 2 replicas and one metric", name)
		} else if m := h.Spec.Metrics[0]; m.External == nil || m.External.Metric.Selector.MatchLabels["layer"] != layer {
			t.Errorf("%s: HPA metric %+v; want the external lag metric of layer %s", name, m, layer)
		} else {
			deploytest.CheckQuery(t, "HPA "+name, m.External.Metric.Name, served)
		}
		pdb := o.pdbs[name]
		if pdb == nil || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != d.Spec.Selector.MatchLabels["app.kubernetes.io/name"] {
			t.Errorf("%s: want a PodDisruptionBudget selecting its pods", name)
		}
	}
	// The workers' stages and the api's together: one member more of each layer's consumer,
	// no stage overlapping another (which cascade would refuse on the broker).
	deploytest.CheckTiling(t, stages)
	if len(stages["api"]) != len(event.ConsumerLayers) || len(stages["view"]) != 0 {
		t.Errorf("api runs stages %v, view %v; want the five per-layer stages on api, none on view", stages["api"], stages["view"])
	}
	if pdb := o.pdbs["nats"]; pdb == nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("nats: want a PodDisruptionBudget of maxUnavailable 1 (quorum of 3)")
	}
}

// The view Deployment: `cascade view` with its --index-dir on a writable volume of its pod
// (the root filesystem is read-only), a Service in front, and a PodDisruptionBudget.
func TestKustomizationView(t *testing.T) {
	t.Parallel()
	o := build(t, ".")
	d := o.deployments["view"]
	if d == nil {
		t.Fatal("no Deployment view")
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if len(c.Args) < 3 || c.Args[0] != "view" || !slices.Contains(c.Args, "--index-dir") {
		t.Fatalf("view: args %v; want cascade view --index-dir DIR", c.Args)
	}
	dir := c.Args[slices.Index(c.Args, "--index-dir")+1]
	var volume string
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly && strings.HasPrefix(dir+"/", m.MountPath+"/") {
			volume = m.Name
		}
	}
	writable := false
	for _, v := range pod.Volumes {
		writable = writable || v.Name == volume && (v.EmptyDir != nil || v.PersistentVolumeClaim != nil)
	}
	if !writable {
		t.Errorf("view: --index-dir %s is on no emptyDir or volume claim (mounts %+v)", dir, c.VolumeMounts)
	}
	if svc := o.services["view"]; svc == nil || svc.Spec.Selector["app.kubernetes.io/name"] != "view" || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("view: want a Service selecting its pods on port http, got %+v", svc)
	}
	if pdb := o.pdbs["view"]; pdb == nil || pdb.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "view" {
		t.Errorf("view: want a PodDisruptionBudget selecting its pods")
	}
}

// The strict decode refuses a misspelt field, so the test above would catch one in the files.
func TestStrictDecodeRefusesAMisspeltField(t *testing.T) {
	t.Parallel()
	raw := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n")
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(raw, &d); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("decoded a Deployment with spec.replica: %v", err)
	}
}
