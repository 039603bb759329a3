package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/vigil-k8s/vigil/internal/config"
	"github.com/vigil-k8s/vigil/internal/metrics"
	"github.com/vigil-k8s/vigil/rules"
)

const (
	kubeDir      = "kubernetes"
	natsValues   = "nats/values.yaml"
	dashboard    = "grafana-dashboard.json"
	dockerfile   = "Dockerfile"
	systemdUnit  = "systemd/vigil.service"
	deployDoc    = "../docs/deploy.md"
	namespace    = "vigil"
	metricsPort  = "metrics"
	configKey    = "--config"
	httpsPort    = 443
	defaultNATS  = 4222
	auditLogPath = "/var/log/kubernetes/audit/audit.log"
)

// The labels the NATS chart puts on its server pods (release "nats").
var natsPodLabels = labels.Set{
	"app.kubernetes.io/name":      "nats",
	"app.kubernetes.io/component": "nats",
	"app.kubernetes.io/instance":  "nats",
}

// build is the output of one kustomization, decoded into API types.
type build struct {
	dir        string
	namespaces map[string]*corev1.Namespace
	configMaps map[string]*corev1.ConfigMap
	accounts   map[string]*corev1.ServiceAccount
	claims     map[string]*corev1.PersistentVolumeClaim
	services   []*corev1.Service
	policies   []*networkingv1.NetworkPolicy
	hpas       []*autoscalingv2.HorizontalPodAutoscaler
	pdbs       []*policyv1.PodDisruptionBudget
	pods       []*pod
}

// pod is the pod template of a Deployment or DaemonSet.
type pod struct {
	owner       string // "Deployment/vigil-worker"
	deployment  *appsv1.Deployment
	labels      labels.Set
	annotations map[string]string
	spec        *corev1.PodSpec
}

// kustomizations finds every kustomization under deploy/kubernetes,
// separating the buildable ones from components.
func kustomizations(t *testing.T) (builds, components []string) {
	t.Helper()
	err := filepath.WalkDir(kubeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		var k struct {
			Kind string `json:"kind"`
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(data, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if k.Kind == "Component" {
			components = append(components, filepath.Dir(p))
		} else {
			builds = append(builds, filepath.Dir(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"base", "overlays/webhook", "overlays/audit-log", "overlays/eks", "overlays/gke", "overlays/kafka", "single"} {
		if !slices.Contains(builds, filepath.Join(kubeDir, want)) {
			t.Fatalf("kustomization %s/%s is missing (found %v)", kubeDir, want, builds)
		}
	}
	return builds, components
}

// kustomize runs what `kubectl kustomize DIR` runs and decodes every
// object strictly: a misspelt field fails here instead of being dropped by
// the API server.
func kustomize(t *testing.T, dir string) *build {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	b := &build{
		dir:        dir,
		namespaces: map[string]*corev1.Namespace{},
		configMaps: map[string]*corev1.ConfigMap{},
		accounts:   map[string]*corev1.ServiceAccount{},
		claims:     map[string]*corev1.PersistentVolumeClaim{},
	}
	for _, r := range rm.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := r.GetKind(), r.GetName()
		decode := func(into any) {
			t.Helper()
			js, err := yaml.YAMLToJSONStrict(data)
			if err != nil {
				t.Fatalf("%s: %s/%s: %v", dir, kind, name, err)
			}
			// Case-sensitive, as the API server decodes: encoding/json
			// would take readOnlyRootFileSystem for readOnlyRootFilesystem.
			strict, err := kjson.UnmarshalStrict(js, into, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
			if err != nil {
				t.Errorf("%s: %s/%s: %v", dir, kind, name, err)
			}
			for _, e := range strict {
				t.Errorf("%s: %s/%s: %v", dir, kind, name, e)
			}
		}
		if ns := r.GetNamespace(); kind != "Namespace" && ns != namespace {
			t.Errorf("%s: %s/%s is in namespace %q, want %q", dir, kind, name, ns, namespace)
		}
		switch kind {
		case "Namespace":
			o := &corev1.Namespace{}
			decode(o)
			b.namespaces[name] = o
		case "ConfigMap":
			o := &corev1.ConfigMap{}
			decode(o)
			b.configMaps[name] = o
		case "ServiceAccount":
			o := &corev1.ServiceAccount{}
			decode(o)
			b.accounts[name] = o
		case "PersistentVolumeClaim":
			o := &corev1.PersistentVolumeClaim{}
			decode(o)
			b.claims[name] = o
		case "Service":
			o := &corev1.Service{}
			decode(o)
			b.services = append(b.services, o)
		case "NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			decode(o)
			b.policies = append(b.policies, o)
		case "HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			decode(o)
			b.hpas = append(b.hpas, o)
		case "PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			decode(o)
			b.pdbs = append(b.pdbs, o)
		case "Deployment":
			o := &appsv1.Deployment{}
			decode(o)
			b.pods = append(b.pods, &pod{owner: kind + "/" + name, deployment: o, labels: o.Spec.Template.Labels,
				annotations: o.Spec.Template.Annotations, spec: &o.Spec.Template.Spec})
			checkSelector(t, dir, kind+"/"+name, o.Spec.Selector, o.Spec.Template.Labels)
		case "DaemonSet":
			o := &appsv1.DaemonSet{}
			decode(o)
			b.pods = append(b.pods, &pod{owner: kind + "/" + name, labels: o.Spec.Template.Labels,
				annotations: o.Spec.Template.Annotations, spec: &o.Spec.Template.Spec})
			checkSelector(t, dir, kind+"/"+name, o.Spec.Selector, o.Spec.Template.Labels)
		default:
			// vigil needs no Kubernetes API access: no Roles or bindings,
			// and nothing else this test does not know how to check.
			t.Errorf("%s: unexpected %s/%s", dir, kind, name)
		}
	}
	return b
}

func checkSelector(t *testing.T, dir, owner string, sel *metav1.LabelSelector, podLabels map[string]string) {
	t.Helper()
	if !matches(sel, podLabels) {
		t.Errorf("%s: %s: selector %v does not match its own pod labels %v", dir, owner, sel, podLabels)
	}
}

func matches(sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(set))
}

func TestKustomizationsBuild(t *testing.T) {
	builds, components := kustomizations(t)
	used := map[string]bool{}
	for _, dir := range builds {
		kustomize(t, dir)
		var k struct {
			Components []string `json:"components"`
		}
		data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, &k); err != nil {
			t.Fatal(err)
		}
		for _, c := range k.Components {
			used[filepath.Join(dir, c)] = true
		}
	}
	for _, c := range components {
		if !used[c] {
			t.Errorf("component %s is not used by any kustomization, so nothing builds or checks it", c)
		}
	}
}

// vigilConfig is the vigil configuration a container runs with.
type vigilConfig struct {
	cfg  *config.Config
	role string
	ctr  *corev1.Container
	pod  *pod
}

func TestPods(t *testing.T) {
	builds, _ := kustomizations(t)
	roles := map[string]bool{}
	ran := 0
	for _, dir := range builds {
		t.Run(strings.TrimPrefix(dir, kubeDir+"/"), func(t *testing.T) {
			ran++
			b := kustomize(t, dir)
			var cfgs []*vigilConfig
			for _, p := range b.pods {
				checkPodSecurity(t, b, p)
				for i := range p.spec.Containers {
					vc := containerConfig(t, b, p, &p.spec.Containers[i])
					if vc == nil {
						continue
					}
					cfgs = append(cfgs, vc)
					roles[vc.role] = true
					if vc.role == "ingest" && len(vc.cfg.Ingest.Files) > 0 {
						roles["ingest files"] = true
					}
					if vc.role == "ingest" && vc.cfg.Ingest.Webhook != nil {
						roles["ingest webhook"] = true
					}
					for _, s := range vc.cfg.Ingest.Sources {
						if vc.role == "ingest" {
							roles["ingest "+s.Type] = true
						}
					}
					checkMetricsAndProbes(t, b, vc)
					checkPlacement(t, b, vc)
					checkVolumes(t, b, vc)
					checkNetwork(t, b, vc)
					checkRules(t, b, vc)
					checkSecretsFromEnv(t, b, vc)
				}
			}
			checkConsistent(t, b, cfgs)
			checkSelectorsSelect(t, b)
			checkAutoscalers(t, b)
			checkUserSecretsDocumented(t, b)
		})
	}
	if ran < len(builds) {
		return // -run chose some of them
	}
	for _, want := range []string{"run", "ingest files", "ingest webhook", "ingest eks", "ingest gke", "ingest kafka", "worker", "notify"} {
		if !roles[want] {
			t.Errorf("no manifest runs vigil %s; its checks never ran", want)
		}
	}
}

// checkPodSecurity: what a cluster with Pod Security "restricted" admits,
// plus the things a platform team asks of every workload.
func checkPodSecurity(t *testing.T, b *build, p *pod) {
	t.Helper()
	where := b.dir + ": " + p.owner
	s := p.spec
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false: vigil never calls the Kubernetes API", where)
	}
	if sa, ok := b.accounts[s.ServiceAccountName]; !ok {
		t.Errorf("%s: ServiceAccount %q is not in the build", where, s.ServiceAccountName)
	} else if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("%s: ServiceAccount %s must set automountServiceAccountToken: false", where, sa.Name)
	}
	if s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("%s: must not share the host's network, PID or IPC namespace", where)
	}
	psc := s.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod must set runAsNonRoot: true and a non-zero runAsUser", where)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod must use the RuntimeDefault seccomp profile", where)
	}
	if len(s.InitContainers) > 0 {
		t.Errorf("%s: init containers are not expected", where)
	}
	for _, c := range s.Containers {
		where := where + " container " + c.Name
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s: no securityContext", where)
			continue
		case sc.RunAsUser != nil && *sc.RunAsUser == 0, sc.RunAsNonRoot != nil && !*sc.RunAsNonRoot:
			t.Errorf("%s: runs as root", where)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s: privileged", where)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem must be true", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation must be false", where)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", where)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("%s: no %s request", where, r)
			}
			if _, ok := c.Resources.Limits[r]; !ok && r == corev1.ResourceMemory {
				t.Errorf("%s: no %s limit", where, r)
			}
		}
		if !strings.Contains(c.Image[strings.LastIndex(c.Image, "/")+1:], ":") && !strings.Contains(c.Image, "@") {
			t.Errorf("%s: image %q has no tag or digest", where, c.Image)
		}
	}
}

// containerConfig finds the vigil configuration a container is started
// with (--config FILE, from a mounted ConfigMap) and parses it with the
// same code vigil runs.
func containerConfig(t *testing.T, b *build, p *pod, c *corev1.Container) *vigilConfig {
	t.Helper()
	where := b.dir + ": " + p.owner + " container " + c.Name
	args := append(slices.Clone(c.Command), c.Args...)
	if len(args) == 0 || !slices.Contains([]string{"run", "ingest", "worker", "notify"}, args[0]) {
		t.Errorf("%s: args %q do not start a vigil role", where, args)
		return nil
	}
	path := ""
	for i, a := range args {
		if a == configKey && i+1 < len(args) {
			path = args[i+1]
		} else if v, ok := strings.CutPrefix(a, configKey+"="); ok {
			path = v
		}
	}
	if path == "" {
		t.Errorf("%s: no %s", where, configKey)
		return nil
	}
	data, ok := fileFromConfigMap(t, b, p, c, path)
	if !ok {
		return nil
	}
	cfg, err := config.Parse(path, data)
	if err != nil {
		t.Errorf("%s: %s does not parse:\n%v", where, path, err)
		return nil
	}
	return &vigilConfig{cfg: cfg, role: args[0], ctr: c, pod: p}
}

// mountFor returns the mount that holds path in the container, and the
// file's key within the volume.
func mountFor(c *corev1.Container, path string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	key := ""
	for i := range c.VolumeMounts {
		m := &c.VolumeMounts[i]
		switch {
		case m.SubPath != "" && m.MountPath == path:
			return m, m.SubPath
		case m.SubPath == "" && strings.HasPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/"):
			if best == nil || len(m.MountPath) > len(best.MountPath) {
				best, key = m, strings.TrimPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
			}
		case m.SubPath == "" && m.MountPath == path:
			best, key = m, ""
		}
	}
	return best, key
}

func volume(p *pod, name string) *corev1.Volume {
	for i := range p.spec.Volumes {
		if p.spec.Volumes[i].Name == name {
			return &p.spec.Volumes[i]
		}
	}
	return nil
}

func fileFromConfigMap(t *testing.T, b *build, p *pod, c *corev1.Container, path string) ([]byte, bool) {
	t.Helper()
	where := b.dir + ": " + p.owner + " container " + c.Name
	m, key := mountFor(c, path)
	if m == nil {
		t.Errorf("%s: nothing is mounted at %s", where, path)
		return nil, false
	}
	v := volume(p, m.Name)
	if v == nil || v.ConfigMap == nil {
		t.Errorf("%s: %s is not from a ConfigMap volume", where, path)
		return nil, false
	}
	cm, ok := b.configMaps[v.ConfigMap.Name]
	if !ok {
		t.Errorf("%s: ConfigMap %s is not in the build", where, v.ConfigMap.Name)
		return nil, false
	}
	data, ok := cm.Data[key]
	if !ok {
		t.Errorf("%s: ConfigMap %s has no key %q for %s", where, cm.Name, key, path)
		return nil, false
	}
	return []byte(data), true
}

func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("listen address %q: %v", addr, err)
		return 0
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Errorf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

// containerPort resolves a probe or Service target port, by number or by
// name, to the container's port number.
func containerPort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return -1
}

func checkMetricsAndProbes(t *testing.T, b *build, vc *vigilConfig) {
	t.Helper()
	where := b.dir + ": " + vc.pod.owner
	if vc.cfg.Metrics.Listen == "" {
		t.Errorf("%s: the configuration sets no metrics.listen: no metrics, and the probes have nothing to ask", where)
		return
	}
	port := listenPort(t, vc.cfg.Metrics.Listen)
	if got := containerPort(vc.ctr, intstr.FromString(metricsPort)); got != port {
		t.Errorf("%s: container port %q is %d, metrics.listen is %s", where, metricsPort, got, vc.cfg.Metrics.Listen)
	}
	probes := []struct {
		name string
		p    *corev1.Probe
		path string
	}{
		{"liveness", vc.ctr.LivenessProbe, "/healthz"},
		{"readiness", vc.ctr.ReadinessProbe, "/readyz"},
		{"startup", vc.ctr.StartupProbe, "/healthz"},
	}
	for _, pr := range probes {
		if pr.p == nil {
			if pr.name != "startup" {
				t.Errorf("%s: no %s probe", where, pr.name)
			}
			continue
		}
		if pr.p.HTTPGet == nil || pr.p.HTTPGet.Path != pr.path || containerPort(vc.ctr, pr.p.HTTPGet.Port) != port {
			t.Errorf("%s: %s probe must GET %s on the metrics port %d, got %+v", where, pr.name, pr.path, port, pr.p.ProbeHandler)
		}
	}
	if vc.pod.annotations["prometheus.io/scrape"] != "true" || vc.pod.annotations["prometheus.io/port"] != strconv.Itoa(int(port)) {
		t.Errorf("%s: Prometheus annotations must scrape port %d, got %v", where, port, vc.pod.annotations)
	}
	if path := vc.pod.annotations["prometheus.io/path"]; path != "" && path != "/metrics" {
		t.Errorf("%s: prometheus.io/path is %q, vigil serves /metrics", where, path)
	}
}

// checkPlacement: a tailer of the audit log must run where the log is, on
// every control-plane node, whose taint keeps other pods away.
func checkPlacement(t *testing.T, b *build, vc *vigilConfig) {
	t.Helper()
	if vc.role != "ingest" || len(vc.cfg.Ingest.Files) == 0 {
		return
	}
	where := b.dir + ": " + vc.pod.owner
	const cp = "node-role.kubernetes.io/control-plane"
	if !strings.HasPrefix(vc.pod.owner, "DaemonSet/") {
		t.Errorf("%s: tails the node's audit log, so it must be a DaemonSet", where)
	}
	if _, ok := vc.pod.spec.NodeSelector[cp]; !ok {
		t.Errorf("%s: nodeSelector must pick the control-plane nodes (%s)", where, cp)
	}
	tolerates := func(tol corev1.Toleration) bool {
		key := tol.Key == cp || (tol.Key == "" && tol.Operator == corev1.TolerationOpExists)
		value := tol.Operator == corev1.TolerationOpExists || tol.Value == ""
		effect := tol.Effect == "" || tol.Effect == corev1.TaintEffectNoSchedule
		return key && value && effect
	}
	if !slices.ContainsFunc(vc.pod.spec.Tolerations, tolerates) {
		t.Errorf("%s: does not tolerate the %s:NoSchedule taint, so it never runs there", where, cp)
	}
}

// checkVolumes: the root filesystem is read-only, so everything vigil
// writes must be on a volume, and what must outlive the pod on one that
// does.
func checkVolumes(t *testing.T, b *build, vc *vigilConfig) {
	t.Helper()
	where := b.dir + ": " + vc.pod.owner
	cfg := vc.cfg
	m, _ := mountFor(vc.ctr, cfg.DataDir)
	if m == nil || m.MountPath != cfg.DataDir || m.ReadOnly {
		t.Errorf("%s: data_dir %s is not a writable volume mount (the root filesystem is read-only)", where, cfg.DataDir)
	} else {
		v := volume(vc.pod, m.Name)
		durable := v != nil && (v.PersistentVolumeClaim != nil || v.HostPath != nil)
		embedded := (vc.role == "run") && cfg.NATS.URL == ""
		checkpoints := vc.role != "worker" && vc.role != "notify" && len(cfg.Ingest.Files) > 0
		if (embedded || checkpoints) && !durable {
			t.Errorf("%s: data_dir holds the JetStream store or file checkpoints and must be a PersistentVolumeClaim or hostPath", where)
		}
		if v != nil && v.PersistentVolumeClaim != nil {
			if _, ok := b.claims[v.PersistentVolumeClaim.ClaimName]; !ok {
				t.Errorf("%s: PersistentVolumeClaim %s is not in the build", where, v.PersistentVolumeClaim.ClaimName)
			}
			if d := vc.pod.deployment; d != nil && (d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Replicas == nil || *d.Spec.Replicas != 1) {
				t.Errorf("%s: one ReadWriteOnce store: want replicas 1 and strategy Recreate", where)
			}
		}
	}
	if vc.role == "ingest" || vc.role == "run" {
		for _, f := range cfg.Ingest.Files {
			// The whole folder, not the file: the apiserver rotates it by
			// renaming it and creating a new one.
			m, _ := mountFor(vc.ctr, filepath.Join(filepath.Dir(f.Path), "rotated.log"))
			if m == nil || !m.ReadOnly {
				t.Errorf("%s: the folder of %s is not mounted read-only", where, f.Path)
				continue
			}
			if v := volume(vc.pod, m.Name); v == nil || v.HostPath == nil || v.HostPath.Path != m.MountPath {
				t.Errorf("%s: %s must be the node's own folder (hostPath at the same path)", where, m.MountPath)
			}
		}
		if w := cfg.Ingest.Webhook; w != nil {
			for _, f := range []string{w.TLS.Cert, w.TLS.Key, w.TLS.ClientCA, w.BearerTokenFile} {
				if f != "" && !fromSecret(vc, f) {
					t.Errorf("%s: webhook credential %s is not mounted from a Secret", where, f)
				}
			}
			if w.TLS.ClientCA == "" && w.BearerTokenFile == "" {
				t.Errorf("%s: the webhook accepts anyone: set tls.client_ca (kube-apiserver's client certificate) or bearer_token_file", where)
			}
		}
		for _, src := range cfg.Ingest.Sources {
			var files []string
			if a := src.SASL; a != nil {
				files = append(files, a.PasswordFile, a.TokenFile)
			}
			if tc := src.TLS; tc != nil {
				files = append(files, tc.Key)
			}
			for _, f := range files {
				if f != "" && !fromSecret(vc, f) {
					t.Errorf("%s: %s source credential %s is not mounted from a Secret", where, src.Type, f)
				}
			}
		}
	}
	for _, v := range vc.pod.spec.Volumes {
		if v.ConfigMap != nil {
			if _, ok := b.configMaps[v.ConfigMap.Name]; !ok {
				t.Errorf("%s: ConfigMap %s is not in the build", where, v.ConfigMap.Name)
			}
		}
	}
}

// fromSecret reports whether the file is in a volume of a Secret.
func fromSecret(vc *vigilConfig, file string) bool {
	m, _ := mountFor(vc.ctr, file)
	if m == nil {
		return false
	}
	v := volume(vc.pod, m.Name)
	return v != nil && v.Secret != nil
}

func checkRules(t *testing.T, b *build, vc *vigilConfig) {
	t.Helper()
	if vc.role != "worker" && vc.role != "run" {
		return
	}
	where := b.dir + ": " + vc.pod.owner
	// Lay the ConfigMaps out as the kubelet does (timestamped folder,
	// ..data link, a link per key), so that the rules load as in the pod.
	root := t.TempDir()
	paths := make([]string, 0, len(vc.cfg.Rules))
	for _, rp := range vc.cfg.Rules {
		m, _ := mountFor(vc.ctr, rp)
		if m == nil {
			t.Errorf("%s: rules path %s is not mounted", where, rp)
			continue
		}
		v := volume(vc.pod, m.Name)
		if v == nil || v.ConfigMap == nil {
			t.Errorf("%s: rules path %s is not from a ConfigMap", where, rp)
			continue
		}
		cm := b.configMaps[v.ConfigMap.Name]
		if cm == nil {
			continue
		}
		dir := filepath.Join(root, m.MountPath)
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			ts := filepath.Join(dir, "..2026_01_01_00_00_00.000000001")
			if err := os.MkdirAll(ts, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
			for k, data := range cm.Data {
				if err := os.WriteFile(filepath.Join(ts, k), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
					t.Fatal(err)
				}
			}
		}
		paths = append(paths, filepath.Join(root, rp))
	}
	set, err := rules.Load(rules.LoadOptions{Paths: paths, Default: vc.cfg.UseDefaultRules()})
	if err != nil {
		t.Errorf("%s: the rules do not load as the pod would load them:\n%v", where, err)
		return
	}
	results, err := set.RunTests(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if strings.HasPrefix(r.Case.File, root) && !r.Passed {
			t.Errorf("%s: rule test %q of %s fails: %s", where, r.Case.Name, strings.TrimPrefix(r.Case.File, root), r.Why)
		}
	}
}

// checkSecretsFromEnv: a destination whose secret is named by an
// environment variable stops the notifier at start-up when the variable
// is not provided.
func checkSecretsFromEnv(t *testing.T, b *build, vc *vigilConfig) {
	t.Helper()
	if vc.role != "notify" && vc.role != "run" {
		return
	}
	fromSecret := slices.ContainsFunc(vc.ctr.EnvFrom, func(e corev1.EnvFromSource) bool { return e.SecretRef != nil })
	for _, d := range vc.cfg.Destinations {
		for _, env := range []string{d.WebhookURLEnv, d.TokenEnv, d.URLEnv, d.HMACSecretEnv} {
			if env == "" || fromSecret || slices.ContainsFunc(vc.ctr.Env, func(e corev1.EnvVar) bool { return e.Name == env }) {
				continue
			}
			t.Errorf("%s: %s: destination %s reads $%s, which the container does not get", b.dir, vc.pod.owner, d.Name, env)
		}
	}
	if vc.role == "notify" && vc.pod.deployment != nil {
		if r := vc.pod.deployment.Spec.Replicas; r == nil || *r != 1 {
			t.Errorf("%s: %s: rate limits are enforced per process: run one notifier", b.dir, vc.pod.owner)
		}
	}
}

// peerAdmits reports whether a NetworkPolicy peer list admits a pod of
// this namespace with these labels. An empty list admits everything.
func peerAdmits(b *build, peers []networkingv1.NetworkPolicyPeer, podLabels labels.Set) bool {
	if len(peers) == 0 {
		return true
	}
	nsLabels := labels.Set{"kubernetes.io/metadata.name": namespace}
	if ns := b.namespaces[namespace]; ns != nil {
		for k, v := range ns.Labels {
			nsLabels[k] = v
		}
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			continue
		}
		if p.NamespaceSelector != nil && !matches(p.NamespaceSelector, nsLabels) {
			continue
		}
		if p.PodSelector == nil || matches(p.PodSelector, podLabels) {
			return true
		}
	}
	return false
}

func portAdmitted(ports []networkingv1.NetworkPolicyPort, c *corev1.Container, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pr := corev1.ProtocolTCP
		if p.Protocol != nil {
			pr = *p.Protocol
		}
		if pr != proto || p.Port == nil {
			if pr == proto && p.Port == nil {
				return true
			}
			continue
		}
		n := p.Port.IntVal
		if p.Port.Type == intstr.String {
			if c == nil {
				continue
			}
			n = containerPort(c, *p.Port)
		}
		end := n
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if port >= n && port <= end {
			return true
		}
	}
	return false
}

func selecting(b *build, podLabels labels.Set, typ networkingv1.PolicyType) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, np := range b.policies {
		if matches(&np.Spec.PodSelector, podLabels) && slices.Contains(np.Spec.PolicyTypes, typ) {
			out = append(out, np)
		}
	}
	return out
}

// checkNetwork evaluates the NetworkPolicies as the cluster would for what
// each role needs: isolation, NATS, DNS, HTTPS out for notifications, the
// webhook from the control plane only, and metrics scrapes.
func checkNetwork(t *testing.T, b *build, vc *vigilConfig) {
	t.Helper()
	where := b.dir + ": " + vc.pod.owner
	podLabels := vc.pod.labels
	ingress := selecting(b, podLabels, networkingv1.PolicyTypeIngress)
	egress := selecting(b, podLabels, networkingv1.PolicyTypeEgress)
	if len(ingress) == 0 || len(egress) == 0 {
		t.Errorf("%s: not isolated by a NetworkPolicy for both ingress and egress", where)
		return
	}
	egressTo := func(proto corev1.Protocol, port int32, to labels.Set) bool {
		for _, np := range egress {
			for _, r := range np.Spec.Egress {
				if portAdmitted(r.Ports, nil, proto, port) && (to == nil || peerAdmits(b, r.To, to)) {
					return true
				}
			}
		}
		return false
	}
	if vc.cfg.NATS.URL != "" {
		u, err := url.Parse(vc.cfg.NATS.URL)
		if err != nil {
			t.Errorf("%s: nats.url: %v", where, err)
			return
		}
		port := int32(defaultNATS)
		if p := u.Port(); p != "" {
			n, _ := strconv.Atoi(p)
			port = int32(n)
		}
		if !egressTo(corev1.ProtocolTCP, port, natsPodLabels) {
			t.Errorf("%s: may not connect to the NATS servers on %d", where, port)
		}
		if net.ParseIP(u.Hostname()) == nil && !egressTo(corev1.ProtocolUDP, 53, nil) {
			t.Errorf("%s: may not resolve %s (DNS, UDP 53)", where, u.Hostname())
		}
		// The NATS servers, if isolated, must let this pod in.
		for _, np := range selecting(b, natsPodLabels, networkingv1.PolicyTypeIngress) {
			ok := slices.ContainsFunc(np.Spec.Ingress, func(r networkingv1.NetworkPolicyIngressRule) bool {
				return portAdmitted(r.Ports, nil, corev1.ProtocolTCP, port) && peerAdmits(b, r.From, podLabels)
			})
			if !ok {
				t.Errorf("%s: NetworkPolicy %s keeps it from the NATS servers' port %d", where, np.Name, port)
			}
		}
	}
	if vc.role == "notify" || vc.role == "run" {
		if !egressTo(corev1.ProtocolTCP, httpsPort, nil) {
			t.Errorf("%s: may not reach Slack or webhook receivers on 443", where)
		}
	}
	for _, src := range vc.cfg.Ingest.Sources {
		if vc.role != "ingest" && vc.role != "run" {
			break
		}
		switch src.Type {
		case config.SourceEKS:
			if !egressTo(corev1.ProtocolTCP, httpsPort, nil) {
				t.Errorf("%s: may not reach CloudWatch Logs and STS on 443", where)
			}
		case config.SourceKafka:
			for _, b := range src.Brokers {
				_, port, _ := net.SplitHostPort(b)
				n, _ := strconv.Atoi(port)
				if !egressTo(corev1.ProtocolTCP, int32(n), nil) {
					t.Errorf("%s: may not reach the broker %s", where, b)
				}
			}
		}
	}

	ingressRules := func(port int32) []networkingv1.NetworkPolicyIngressRule {
		var out []networkingv1.NetworkPolicyIngressRule
		for _, np := range ingress {
			for _, r := range np.Spec.Ingress {
				if portAdmitted(r.Ports, vc.ctr, corev1.ProtocolTCP, port) {
					out = append(out, r)
				}
			}
		}
		return out
	}
	if vc.cfg.Metrics.Listen != "" && len(ingressRules(listenPort(t, vc.cfg.Metrics.Listen))) == 0 {
		t.Errorf("%s: Prometheus may not scrape the metrics port", where)
	}
	if w := vc.cfg.Ingest.Webhook; w != nil && (vc.role == "ingest" || vc.role == "run") {
		port := listenPort(t, w.Listen)
		if containerPort(vc.ctr, intstr.FromInt32(port)) != port || !slices.ContainsFunc(vc.ctr.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == port }) {
			t.Errorf("%s: the webhook port %d is not a container port", where, port)
		}
		rs := ingressRules(port)
		if len(rs) == 0 {
			t.Errorf("%s: nothing may reach the webhook on %d", where, port)
		}
		for _, r := range rs {
			if len(r.From) == 0 || slices.ContainsFunc(r.From, func(p networkingv1.NetworkPolicyPeer) bool { return p.IPBlock == nil }) {
				t.Errorf("%s: the webhook on %d is open to more than the control plane's addresses: %+v", where, port, r.From)
			}
		}
		served := false
		for _, s := range b.services {
			if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				if containerPort(vc.ctr, sp.TargetPort) == port {
					served = true
				}
			}
		}
		if !served {
			t.Errorf("%s: no Service sends kube-apiserver's webhook traffic to port %d", where, port)
		}
	}
}

// checkConsistent: every process of one install must agree on where
// JetStream is and how its streams are replicated, or the first one to
// start decides for all of them.
func checkConsistent(t *testing.T, b *build, cfgs []*vigilConfig) {
	t.Helper()
	values := natsChartValues(t)
	for _, vc := range cfgs {
		first := cfgs[0].cfg
		c := vc.cfg
		if c.Cluster != first.Cluster || c.NATS.URL != first.NATS.URL || c.NATS.Replicas != first.NATS.Replicas {
			t.Errorf("%s: %s runs with cluster %q, nats.url %q, nats.replicas %d; %s with %q, %q, %d",
				b.dir, vc.pod.owner, c.Cluster, c.NATS.URL, c.NATS.Replicas,
				cfgs[0].pod.owner, first.Cluster, first.NATS.URL, first.NATS.Replicas)
		}
		if c.NATS.URL == "" {
			continue
		}
		u, err := url.Parse(c.NATS.URL)
		if err != nil {
			continue
		}
		if u.Hostname() != values.FullnameOverride {
			t.Errorf("%s: %s: nats.url host %q is not the NATS chart's Service %q (%s)", b.dir, vc.pod.owner, u.Hostname(), values.FullnameOverride, natsValues)
		}
		if c.NATS.Replicas != values.Config.Cluster.Replicas {
			t.Errorf("%s: %s: nats.replicas is %d, the NATS cluster of %s has %d servers", b.dir, vc.pod.owner, c.NATS.Replicas, natsValues, values.Config.Cluster.Replicas)
		}
	}
}

// checkSelectorsSelect: a Service, PodDisruptionBudget or NetworkPolicy
// whose selector matches nothing is silently useless.
func checkSelectorsSelect(t *testing.T, b *build) {
	t.Helper()
	if len(b.pods) == 0 {
		return // a base that only overlays apply
	}
	selectsAny := func(sel func(labels.Set) bool) bool {
		return slices.ContainsFunc(b.pods, func(p *pod) bool { return sel(p.labels) })
	}
	for _, s := range b.services {
		if !selectsAny(func(l labels.Set) bool {
			return len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(l)
		}) {
			t.Errorf("%s: Service %s selects no pod", b.dir, s.Name)
		}
	}
	for _, pdb := range b.pdbs {
		if !selectsAny(func(l labels.Set) bool { return matches(pdb.Spec.Selector, l) }) {
			t.Errorf("%s: PodDisruptionBudget %s selects no pod", b.dir, pdb.Name)
		}
	}
	for _, np := range b.policies {
		if matches(&np.Spec.PodSelector, natsPodLabels) {
			continue
		}
		if !selectsAny(func(l labels.Set) bool { return matches(&np.Spec.PodSelector, l) }) {
			t.Errorf("%s: NetworkPolicy %s selects no pod", b.dir, np.Name)
		}
	}
}

func checkAutoscalers(t *testing.T, b *build) {
	t.Helper()
	for _, h := range b.hpas {
		ref := h.Spec.ScaleTargetRef
		i := slices.IndexFunc(b.pods, func(p *pod) bool { return p.owner == ref.Kind+"/"+ref.Name })
		if i < 0 {
			t.Errorf("%s: HorizontalPodAutoscaler %s scales %s/%s, which is not in the build", b.dir, h.Name, ref.Kind, ref.Name)
			continue
		}
		p := b.pods[i]
		if p.deployment != nil && p.deployment.Spec.Replicas != nil {
			t.Errorf("%s: %s sets replicas: every apply would undo the HorizontalPodAutoscaler", b.dir, p.owner)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			t.Errorf("%s: HorizontalPodAutoscaler %s: at least 2 replicas, so that losing one does not stop evaluation", b.dir, h.Name)
		}
		for _, m := range h.Spec.Metrics {
			if m.Resource == nil {
				continue
			}
			for _, c := range p.spec.Containers {
				if _, ok := c.Resources.Requests[m.Resource.Name]; !ok {
					t.Errorf("%s: HorizontalPodAutoscaler %s scales on %s, which %s does not request", b.dir, h.Name, m.Resource.Name, p.owner)
				}
			}
		}
	}
}

// checkUserSecretsDocumented: Secrets the manifests use but do not create
// must be created by the user, so docs/deploy.md must say how.
func checkUserSecretsDocumented(t *testing.T, b *build) {
	t.Helper()
	doc, err := os.ReadFile(deployDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range b.pods {
		var names []string
		for _, v := range p.spec.Volumes {
			if v.Secret != nil {
				names = append(names, v.Secret.SecretName)
			}
		}
		for _, c := range p.spec.Containers {
			for _, e := range c.EnvFrom {
				if e.SecretRef != nil {
					names = append(names, e.SecretRef.Name)
				}
			}
		}
		for _, n := range names {
			if !strings.Contains(string(doc), n) {
				t.Errorf("%s: %s uses Secret %s, which %s does not tell how to create", b.dir, p.owner, n, deployDoc)
			}
		}
	}
}

type chartValues struct {
	FullnameOverride string `json:"fullnameOverride"`
	Config           struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled     bool `json:"enabled"`
			MemoryStore struct {
				Enabled *bool `json:"enabled"`
			} `json:"memoryStore"`
			FileStore struct {
				Enabled *bool `json:"enabled"`
				PVC     struct {
					Enabled *bool  `json:"enabled"`
					Size    string `json:"size"`
				} `json:"pvc"`
			} `json:"fileStore"`
		} `json:"jetstream"`
	} `json:"config"`
}

func natsChartValues(t *testing.T) *chartValues {
	t.Helper()
	data, err := os.ReadFile(natsValues)
	if err != nil {
		t.Fatal(err)
	}
	v := &chartValues{}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", natsValues, err)
	}
	return v
}

func TestNATSValues(t *testing.T) {
	v := natsChartValues(t)
	js := v.Config.JetStream
	if !v.Config.Cluster.Enabled || v.Config.Cluster.Replicas != 3 {
		t.Errorf("%s: want config.cluster enabled with 3 replicas, got %+v", natsValues, v.Config.Cluster)
	}
	if !js.Enabled {
		t.Errorf("%s: config.jetstream.enabled must be true", natsValues)
	}
	off := func(b *bool) bool { return b != nil && !*b }
	if off(js.FileStore.Enabled) || off(js.FileStore.PVC.Enabled) || js.FileStore.PVC.Size == "" {
		t.Errorf("%s: JetStream must store on a PersistentVolumeClaim of a set size, got %+v", natsValues, js.FileStore)
	}
	if js.MemoryStore.Enabled != nil && *js.MemoryStore.Enabled {
		t.Errorf("%s: a memory store loses the streams when the servers restart", natsValues)
	}
	if v.FullnameOverride == "" {
		t.Errorf("%s: fullnameOverride pins the Service name that nats.url uses", natsValues)
	}
}

// vigilMetricNames are the names vigil exports, from the descriptors of
// the collectors that the running binary registers.
func vigilMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics.New(reg)
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	names := map[string]bool{}
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil && strings.HasPrefix(m[1], "vigil_") {
			names[m[1]] = true
		}
	}
	if len(names) == 0 {
		t.Fatal("no vigil_ metrics registered by metrics.New")
	}
	return names
}

// promQL extracts every Prometheus query of a dashboard: panel targets,
// nested rows, and variable queries.
func promQL(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "expr" || k == "query") {
				*out = append(*out, s)
				continue
			}
			if q, ok := e.(map[string]any); ok && k == "query" {
				if s, ok := q["query"].(string); ok {
					*out = append(*out, s)
				}
				continue
			}
			promQL(e, out)
		}
	case []any:
		for _, e := range x {
			promQL(e, out)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboard, err)
	}
	var dsVar bool
	if tpl, ok := d["templating"].(map[string]any); ok {
		list, _ := tpl["list"].([]any)
		for _, e := range list {
			if v, ok := e.(map[string]any); ok && v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource" {
				dsVar = true
			}
		}
	}
	if !dsVar {
		t.Errorf("%s: no Prometheus datasource variable named datasource", dashboard)
	}
	panels, _ := d["panels"].([]any)
	for _, p := range panels {
		p := p.(map[string]any)
		if p["type"] == "row" {
			continue
		}
		ds, _ := p["datasource"].(map[string]any)
		if ds == nil || ds["uid"] != "${datasource}" {
			t.Errorf("%s: panel %q does not use the datasource variable", dashboard, p["title"])
		}
		if targets, _ := p["targets"].([]any); len(targets) == 0 {
			t.Errorf("%s: panel %q has no query", dashboard, p["title"])
		}
	}

	known := vigilMetricNames(t)
	var queries []string
	promQL(d, &queries)
	used := map[string]bool{}
	name := regexp.MustCompile(`\bvigil_[a-zA-Z0-9_]+`)
	for _, q := range queries {
		for _, n := range name.FindAllString(q, -1) {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && known[b] {
					base = b
				}
			}
			if !known[base] {
				t.Errorf("%s: query %q uses %s, which vigil does not export (internal/metrics)", dashboard, q, n)
			}
			used[base] = true
		}
	}
	var missing []string
	for n := range known {
		if !used[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s shows no panel for %v: add one so that operators can see them", dashboard, missing)
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	var froms []string
	var user, entrypoint string
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "ENTRYPOINT":
			entrypoint = strings.TrimSpace(strings.TrimPrefix(line, f[0]))
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%s: want a multi-stage build, got FROM %v", dockerfile, froms)
	}
	if got := froms[len(froms)-1]; got != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("%s: final image is %s, want gcr.io/distroless/static-debian12:nonroot", dockerfile, got)
	}
	// The builder's Go must be at least the go directive of go.mod.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	got := regexp.MustCompile(`^golang:(\d+)\.(\d+)`).FindStringSubmatch(froms[0])
	if want == nil || got == nil {
		t.Errorf("%s: builder %s, go.mod %v: cannot compare Go versions", dockerfile, froms[0], want)
	} else if gv, wv := atoi(got[1])*1000+atoi(got[2]), atoi(want[1])*1000+atoi(want[2]); gv < wv {
		t.Errorf("%s: builder %s is older than go.mod's go %s.%s", dockerfile, froms[0], want[1], want[2])
	}
	if !strings.Contains(text, "CGO_ENABLED=0") || !strings.Contains(text, "-o /vigil ./cmd/vigil") {
		t.Errorf("%s: must build a static binary: CGO_ENABLED=0 go build -o /vigil ./cmd/vigil", dockerfile)
	}
	if _, err := os.Stat("../cmd/vigil/main.go"); err != nil {
		t.Errorf("%s builds ./cmd/vigil: %v", dockerfile, err)
	}
	if entrypoint != `["/vigil"]` {
		t.Errorf("%s: ENTRYPOINT %s, want [\"/vigil\"]", dockerfile, entrypoint)
	}
	// The uid must be the one the manifests run as, or files on volumes
	// (the JetStream store, checkpoints) belong to someone else.
	uid := strings.Split(user, ":")[0]
	if uid == "" || uid == "0" || uid == "root" {
		t.Fatalf("%s: USER %q is not a non-root uid", dockerfile, user)
	}
	builds, _ := kustomizations(t)
	for _, dir := range builds {
		for _, p := range kustomize(t, dir).pods {
			if sc := p.spec.SecurityContext; sc != nil && sc.RunAsUser != nil && strconv.FormatInt(*sc.RunAsUser, 10) != uid {
				t.Errorf("%s: %s runs as uid %d, the image as %s", dir, p.owner, *sc.RunAsUser, uid)
			}
		}
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// unit reads a systemd unit's [Service] settings; repeated keys append.
func unit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("%s: malformed line %q", path, line)
				continue
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSystemdUnit(t *testing.T) {
	u := unit(t, systemdUnit)
	one := func(k string) string {
		if v := u["Service."+k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	exec := strings.Fields(one("ExecStart"))
	if len(exec) < 2 || exec[0] != "/usr/local/bin/vigil" || exec[1] != "run" {
		t.Fatalf("%s: ExecStart %q, want /usr/local/bin/vigil run --config ...", systemdUnit, exec)
	}
	i := slices.Index(exec, configKey)
	if i < 0 || i+1 >= len(exec) {
		t.Fatalf("%s: ExecStart has no %s", systemdUnit, configKey)
	}
	// The example configuration beside the unit is the file it names.
	example := filepath.Join(filepath.Dir(systemdUnit), filepath.Base(exec[i+1]))
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatalf("%s names %s; the example %s: %v", systemdUnit, exec[i+1], example, err)
	}
	cfg, err := config.Parse(example, data)
	if err != nil {
		t.Fatalf("%s does not parse:\n%v", example, err)
	}
	if state := one("StateDirectory"); state == "" || cfg.DataDir != "/var/lib/"+state {
		t.Errorf("%s: data_dir %s is not the unit's StateDirectory /var/lib/%s, the only writable place", example, cfg.DataDir, state)
	}
	if len(cfg.Ingest.Files) == 0 {
		t.Errorf("%s: tails no audit log", example)
	}
	readOnly := strings.Fields(strings.Join(u["Service.ReadOnlyPaths"], " "))
	for _, f := range cfg.Ingest.Files {
		if !slices.ContainsFunc(readOnly, func(p string) bool {
			return strings.HasPrefix(f.Path, strings.TrimPrefix(strings.TrimSuffix(p, "/"), "-")+"/")
		}) {
			t.Errorf("%s: %s is not under the unit's ReadOnlyPaths %v", example, f.Path, readOnly)
		}
	}
	if !slices.ContainsFunc(cfg.Ingest.Files, func(f config.FileSource) bool { return f.Path == auditLogPath }) {
		t.Errorf("%s: does not tail %s", example, auditLogPath)
	}
	for k, want := range map[string]string{
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "KillSignal": "SIGTERM",
		"ExecReload": "/bin/kill -HUP $MAINPID",
	} {
		if got := one(k); got != want {
			t.Errorf("%s: %s=%q, want %q", systemdUnit, k, got, want)
		}
	}
	if user := one("User"); (user == "" || user == "root") && one("DynamicUser") != "yes" {
		t.Errorf("%s: runs as root", systemdUnit)
	}
	if cfg.Metrics.Listen == "" {
		t.Errorf("%s: no metrics.listen", example)
	}
}
