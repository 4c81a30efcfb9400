package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/yannh/kubeconform/pkg/resource"
	"github.com/yannh/kubeconform/pkg/validator"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/tenancyhq/tenancy/deploy/internal/k8sschema"
	"github.com/tenancyhq/tenancy/internal/config"
)

var (
	k8sOpenAPI = flag.String("k8s-openapi", "", "api/openapi-spec/v3 directory of the k8s.io/kubernetes module at kubernetesVersion: check the vendored schemas against it (see testdata/README.md)")
	update     = flag.Bool("update", false, "with -k8s-openapi: rewrite the vendored schemas instead of comparing")
)

// kubernetesVersion is the release the vendored schemas come from.
const kubernetesVersion = "1.34.4"

// schemaRoot holds the schemas in kubeconform's (kubernetes-json-schema's)
// layout.
var schemaRoot = filepath.Join("testdata", "kubernetes-json-schema")

func schemaDir() string {
	return filepath.Join(schemaRoot, "v"+kubernetesVersion+"-standalone-strict")
}

// schemaKinds are the kinds the manifests may use; anything else fails
// validation for want of a schema, so adding a kind means vendoring its
// schema (testdata/README.md).
var schemaKinds = []k8sschema.Kind{
	{Doc: "api__v1_openapi.json", Name: "io.k8s.api.core.v1.ConfigMap"},
	{Doc: "api__v1_openapi.json", Name: "io.k8s.api.core.v1.Secret"},
	{Doc: "api__v1_openapi.json", Name: "io.k8s.api.core.v1.Service"},
	{Doc: "apis__apps__v1_openapi.json", Name: "io.k8s.api.apps.v1.Deployment"},
	{Doc: "apis__apps__v1_openapi.json", Name: "io.k8s.api.apps.v1.StatefulSet"},
	{Doc: "apis__policy__v1_openapi.json", Name: "io.k8s.api.policy.v1.PodDisruptionBudget"},
	{Doc: "apis__networking.k8s.io__v1_openapi.json", Name: "io.k8s.api.networking.v1.NetworkPolicy"},
}

// TestVendoredSchemas regenerates the schemas from the Kubernetes OpenAPI
// documents when given them, and fails if the vendored files differ (or
// rewrites them with -update).
func TestVendoredSchemas(t *testing.T) {
	if *k8sOpenAPI == "" {
		t.Skip("pass -k8s-openapi=DIR to check the vendored schemas against their source (testdata/README.md)")
	}
	if *update {
		if err := os.MkdirAll(schemaDir(), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range schemaKinds {
		doc, err := os.ReadFile(filepath.Join(*k8sOpenAPI, k.Doc))
		if err != nil {
			t.Fatal(err)
		}
		s, err := k8sschema.Generate(doc, k.Name)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(schemaDir(), s.File)
		if *update {
			if err := os.WriteFile(path, s.JSON, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		have, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(have, s.JSON) {
			t.Errorf("%s is not what %s generates from %s (%v); rerun with -update", path, k.Name, k.Doc, err)
		}
	}
}

// TestVendoredSchemasCompile catches a broken schema file directly:
// kubeconform would only report its kind as having no schema.
func TestVendoredSchemasCompile(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(schemaDir(), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(schemaKinds) {
		t.Fatalf("%d schema files in %s, want one per kind in schemaKinds (%d)", len(files), schemaDir(), len(schemaKinds))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft4)
		abs, _ := filepath.Abs(f)
		if err := c.AddResource(abs, doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if _, err := c.Compile(abs); err != nil {
			t.Errorf("%s does not compile: %v", f, err)
		}
	}
}

// mustValidator is kubeconform in strict mode on the vendored schemas only:
// a kind without a vendored schema is an error, never skipped.
func mustValidator(t *testing.T) validator.Validator {
	t.Helper()
	root, err := filepath.Abs(schemaRoot)
	if err != nil {
		t.Fatal(err)
	}
	v, err := validator.New(
		[]string{root + "/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json"},
		validator.Opts{KubernetesVersion: kubernetesVersion, Strict: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// validate reports whether kubeconform accepts one manifest, and why not.
func validate(v validator.Validator, name string, manifest []byte) error {
	res := v.ValidateResource(resource.Resource{Path: name, Bytes: manifest})
	if res.Status == validator.Valid {
		return nil
	}
	var why []string
	for _, e := range res.ValidationErrors {
		why = append(why, e.Path+": "+e.Msg)
	}
	return fmt.Errorf("%s: status %d, %v %v", name, res.Status, res.Err, why)
}

// TestSchemaValidationRejects shows the validation has teeth: strict
// schemas reject what the API server would, and a kind without a schema is
// an error rather than silently skipped.
func TestSchemaValidationRejects(t *testing.T) {
	v := mustValidator(t)
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec:
      containers:
        - name: x
          image: x
          %s
`
	for _, tc := range []struct {
		name, manifest string
		valid          bool
	}{
		{"valid", fmt.Sprintf(deployment, "ports: [{containerPort: 80}]"), true},
		{"misspelt field", fmt.Sprintf(deployment, "livenessprobe: {httpGet: {port: 80}}"), false},
		{"field at the wrong level", fmt.Sprintf(deployment, "replicas: 2"), false},
		{"wrong type", fmt.Sprintf(deployment, "ports: [{containerPort: eighty}]"), false},
		{"port neither name nor number", fmt.Sprintf(deployment, "livenessProbe: {httpGet: {port: true}}"), false},
		{"missing required field", fmt.Sprintf(deployment, "ports: [{name: http}]"), false},
		{"quantity of the wrong type", fmt.Sprintf(deployment, "resources: {limits: {memory: [1]}}"), false},
		{"kind without a vendored schema", "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\n", false},
		{"wrong apiVersion for the kind", "apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n", false},
		{"duplicate key", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b, a: c}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(v, tc.name, []byte(tc.manifest))
			if tc.valid && err != nil {
				t.Errorf("rejected: %v", err)
			}
			if !tc.valid && err == nil {
				t.Error("accepted")
			}
		})
	}
}

// object is the part of a rendered manifest the invariants look at.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Data       map[string]string `json:"data"`
	StringData map[string]string `json:"stringData"`
	Spec       struct {
		Replicas            *int            `json:"replicas"`
		ServiceName         string          `json:"serviceName"`
		PodManagementPolicy string          `json:"podManagementPolicy"`
		Selector            json.RawMessage `json:"selector"`
		Template            struct {
			Metadata struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
			Spec podSpec `json:"spec"`
		} `json:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"volumeClaimTemplates"`
		MinAvailable             any             `json:"minAvailable"`
		MaxUnavailable           any             `json:"maxUnavailable"`
		ClusterIP                string          `json:"clusterIP"`
		PublishNotReadyAddresses bool            `json:"publishNotReadyAddresses"`
		PodSelector              json.RawMessage `json:"podSelector"`
		Ingress                  []struct {
			From []struct {
				PodSelector json.RawMessage `json:"podSelector"`
			} `json:"from"`
			Ports []struct {
				Port any `json:"port"`
			} `json:"ports"`
		} `json:"ingress"`
		Ports []struct {
			Name       string `json:"name"`
			Port       int    `json:"port"`
			TargetPort any    `json:"targetPort"`
		} `json:"ports"`
	} `json:"spec"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool `json:"runAsNonRoot"`
	} `json:"securityContext"`
	Containers []container `json:"containers"`
	Volumes    []struct {
		Name      string `json:"name"`
		ConfigMap *struct {
			Name string `json:"name"`
		} `json:"configMap"`
	} `json:"volumes"`
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type container struct {
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	Command []string `json:"command"`
	Env     []struct {
		Name      string `json:"name"`
		Value     string `json:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `json:"name"`
				Key  string `json:"key"`
			} `json:"secretKeyRef"`
		} `json:"valueFrom"`
	} `json:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `json:"name"`
		} `json:"configMapRef"`
		SecretRef *struct {
			Name string `json:"name"`
		} `json:"secretRef"`
	} `json:"envFrom"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	StartupProbe   *probe `json:"startupProbe"`
	LivenessProbe  *probe `json:"livenessProbe"`
	ReadinessProbe *probe `json:"readinessProbe"`
	Resources      struct {
		Requests map[string]any `json:"requests"`
		Limits   map[string]any `json:"limits"`
	} `json:"resources"`
	SecurityContext struct {
		RunAsNonRoot             *bool `json:"runAsNonRoot"`
		ReadOnlyRootFilesystem   *bool `json:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `json:"allowPrivilegeEscalation"`
		Capabilities             struct {
			Drop []string `json:"drop"`
		} `json:"capabilities"`
	} `json:"securityContext"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
}

// port resolves a probe's or Service's port (a name or a number) to one of
// the container's ports; 0 if there is none.
func (c container) port(p any) int {
	for _, cp := range c.Ports {
		switch p := p.(type) {
		case string:
			if cp.Name == p {
				return cp.ContainerPort
			}
		case float64:
			if float64(cp.ContainerPort) == p {
				return cp.ContainerPort
			}
		}
	}
	return 0
}

func (c container) env(name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// manifest is one rendered object: raw YAML for kubeconform, decoded for
// the invariants.
type manifest struct {
	id   string
	yaml []byte
	obj  object
}

// render builds a kustomization from disk, the way `kubectl apply -k` would.
func render(t *testing.T, dir string) []manifest {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []manifest
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatal(err)
		}
		var o object
		if err := json.Unmarshal(j, &o); err != nil {
			t.Fatalf("%s: %v", r.CurId(), err)
		}
		out = append(out, manifest{id: o.Kind + "/" + o.Metadata.Name, yaml: y, obj: o})
	}
	return out
}

// kubernetesSetups are the kustomizations to build, with what each must
// come out as.
var kubernetesSetups = []struct {
	dir              string
	serviceReplicas  int
	natsReplicas     int
	disruptionBudget bool
}{
	{"kubernetes/base", 2, 3, true},
	{"kubernetes/overlays/dev", 1, 1, false},
}

// tenancyDeployments are the services and the port each serves health
// checks (and soon metrics) on.
var tenancyDeployments = map[string]int{"api": 8080, "projector": 8081, "provisioner": 8082, "webhooker": 8083}

// secretExample is the documented template of the Secret every pod reads.
const secretExample = "kubernetes/secrets.env.example"

// natsServerSecrets are the Secret's keys the NATS servers read (their
// users' passwords, see checkNATSUsers) rather than the services, by the
// variable each is given to nats-server as.
var natsServerSecrets = map[string]bool{"NATS_PASSWORD": true, "NATS_READER_PASSWORD": true}

// natsServerEnv maps nats-auth.conf's variables to the Secret's keys.
var natsServerEnv = map[string]string{"TENANCY_NATS_PASSWORD": "NATS_PASSWORD", "TENANCY_NATS_READER_PASSWORD": "NATS_READER_PASSWORD"}

// secretName is the Secret the manifests reference but do not contain.
const secretName = "tenancy-secrets"

// exampleSecretKeys reads the keys of secrets.env.example, failing on any
// filled-in value: the example must never carry a secret.
func exampleSecretKeys(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(secretExample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var keys []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=", secretExample, line)
		}
		if v != "" {
			t.Errorf("%s gives %s a value; it must stay a template", secretExample, k)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestKubernetesManifests(t *testing.T) {
	v := mustValidator(t)
	documented := map[string]bool{}
	for _, d := range config.Vars {
		documented[d.Name] = true
	}
	secretKeys := exampleSecretKeys(t)
	for _, k := range secretKeys {
		if !documented[k] && !natsServerSecrets[k] {
			t.Errorf("%s lists %s, which internal/config does not document", secretExample, k)
		}
	}
	for _, k := range []string{"TENANCY_SIGNING_KEY", "TENANCY_MASTER_KEY", "DATABASE_URL"} {
		if !slices.Contains(secretKeys, k) {
			t.Errorf("%s does not list %s, which every service needs", secretExample, k)
		}
	}
	bins := builtBinaries(t)

	for _, setup := range kubernetesSetups {
		t.Run(setup.dir, func(t *testing.T) {
			objs := render(t, setup.dir)
			byKind := map[string]map[string]object{}
			for _, m := range objs {
				if err := validate(v, setup.dir+": "+m.id, m.yaml); err != nil {
					t.Error(err)
				}
				if byKind[m.obj.Kind] == nil {
					byKind[m.obj.Kind] = map[string]object{}
				}
				byKind[m.obj.Kind][m.obj.Metadata.Name] = m.obj
				if m.obj.Metadata.Namespace != "tenancy" {
					t.Errorf("%s is in namespace %q, want tenancy", m.id, m.obj.Metadata.Namespace)
				}
				// Secrets are created out of band (secrets.env.example),
				// never rendered from the repository.
				if m.obj.Kind == "Secret" {
					t.Errorf("%s: the manifests must not contain a Secret; reference %s instead", m.id, secretName)
				}
			}
			pdbs := byKind["PodDisruptionBudget"]
			if setup.disruptionBudget != (len(pdbs) > 0) {
				t.Errorf("%d PodDisruptionBudgets, want them: %v", len(pdbs), setup.disruptionBudget)
			}
			// budgetFor returns the PDB selecting a pod with these labels.
			budgetFor := func(labels map[string]string) (object, bool) {
				for _, p := range pdbs {
					if selects(t, p.Spec.Selector, labels) {
						return p, true
					}
				}
				return object{}, false
			}

			for name, port := range tenancyDeployments {
				d, ok := byKind["Deployment"][name]
				if !ok {
					t.Errorf("no Deployment %s", name)
					continue
				}
				checkDeployment(t, d, name, port, setup.serviceReplicas, bins, documented, secretKeys, byKind["ConfigMap"])
				if !selects(t, d.Spec.Selector, d.Spec.Template.Metadata.Labels) {
					t.Errorf("Deployment %s does not select its own pods", name)
				}
				if setup.disruptionBudget {
					if p, ok := budgetFor(d.Spec.Template.Metadata.Labels); !ok {
						t.Errorf("no PodDisruptionBudget selects Deployment %s", name)
					} else if p.Spec.MinAvailable != float64(1) || p.Spec.MaxUnavailable != nil {
						t.Errorf("PodDisruptionBudget %s: minAvailable %v maxUnavailable %v, want minAvailable 1", p.Metadata.Name, p.Spec.MinAvailable, p.Spec.MaxUnavailable)
					}
				}
			}
			// No budget may select pods of two workloads at once.
			for _, p := range pdbs {
				n := 0
				for _, d := range byKind["Deployment"] {
					if selects(t, p.Spec.Selector, d.Spec.Template.Metadata.Labels) {
						n++
					}
				}
				for _, s := range byKind["StatefulSet"] {
					if selects(t, p.Spec.Selector, s.Spec.Template.Metadata.Labels) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("PodDisruptionBudget %s selects %d workloads, want 1", p.Metadata.Name, n)
				}
			}

			api, ok := byKind["Service"]["api"]
			if !ok {
				t.Fatal("no Service api")
			}
			apiDeployment := byKind["Deployment"]["api"]
			if !selects(t, mustMatchLabels(t, api.Spec.Selector), apiDeployment.Spec.Template.Metadata.Labels) {
				t.Error("Service api does not select the api pods")
			}
			for _, p := range api.Spec.Ports {
				if len(apiDeployment.Spec.Template.Spec.Containers) == 0 || apiDeployment.Spec.Template.Spec.Containers[0].port(p.TargetPort) == 0 {
					t.Errorf("Service api port %s targets %v, which the api container does not expose", p.Name, p.TargetPort)
				}
			}

			checkNATS(t, byKind, setup.natsReplicas, pdbs, budgetFor, bins)
		})
	}
}

// mustMatchLabels wraps a Service's plain selector as a label selector.
func mustMatchLabels(t *testing.T, sel json.RawMessage) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(map[string]json.RawMessage{"matchLabels": sel})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// selects reports whether a label selector (matchLabels only: the
// manifests use nothing else) selects pods with these labels.
func selects(t *testing.T, raw json.RawMessage, labels map[string]string) bool {
	t.Helper()
	var sel struct {
		MatchLabels      map[string]string `json:"matchLabels"`
		MatchExpressions []any             `json:"matchExpressions"`
	}
	if err := json.Unmarshal(raw, &sel); err != nil {
		t.Fatalf("selector %s: %v", raw, err)
	}
	if len(sel.MatchExpressions) > 0 || len(sel.MatchLabels) == 0 {
		t.Fatalf("selector %s: use matchLabels only", raw)
	}
	for k, v := range sel.MatchLabels {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func checkDeployment(t *testing.T, d object, name string, port, replicas int, bins, documented map[string]bool, secretKeys []string, configMaps map[string]object) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != replicas {
		t.Errorf("Deployment %s: replicas %v, want %d", name, d.Spec.Replicas, replicas)
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("Deployment %s: %d containers, want 1", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) == 0 || c.Command[0] != "/usr/local/bin/"+name || !bins[name] {
		t.Errorf("Deployment %s runs %v, want /usr/local/bin/%s (built: %v)", name, c.Command, name, bins[name])
	}
	if !strings.HasPrefix(c.Image, "tenancy:") {
		t.Errorf("Deployment %s: image %s, want the tenancy image (renamed with kustomize images:)", name, c.Image)
	}
	// The HTTP port: what TENANCY_HTTP_ADDR listens on, what the probes
	// and Prometheus use.
	addr, ok := c.env("TENANCY_HTTP_ADDR")
	if !ok || addr != ":"+strconv.Itoa(port) || c.port("http") != port {
		t.Errorf("Deployment %s: TENANCY_HTTP_ADDR %q and container port http %d, want :%d on both", name, addr, c.port("http"), port)
	}
	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("Deployment %s has no HTTP %s probe", name, p.name)
			continue
		}
		if got := c.port(p.probe.HTTPGet.Port); got != port || p.probe.HTTPGet.Path != p.path {
			t.Errorf("Deployment %s: %s probe %s on port %v (container port %d), want %s on %d", name, p.name, p.probe.HTTPGet.Path, p.probe.HTTPGet.Port, got, p.path, port)
		}
	}
	ann := d.Spec.Template.Metadata.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("Deployment %s: scrape annotations %v, want port %d path /metrics", name, ann, port)
	}
	checkContainerHardening(t, "Deployment "+name, pod, c)

	// Configuration: every variable documented, secrets only from the
	// Secret, the ConfigMaps referenced present.
	for _, e := range c.Env {
		if !documented[e.Name] {
			t.Errorf("Deployment %s sets %s, which internal/config does not document", name, e.Name)
		}
		if slices.Contains(secretKeys, e.Name) {
			t.Errorf("Deployment %s sets the secret %s in plain text; it belongs in %s", name, e.Name, secretName)
		}
	}
	var secretRefs int
	for _, ef := range c.EnvFrom {
		switch {
		case ef.SecretRef != nil:
			secretRefs++
			if ef.SecretRef.Name != secretName {
				t.Errorf("Deployment %s reads Secret %s; the documented one is %s", name, ef.SecretRef.Name, secretName)
			}
		case ef.ConfigMapRef != nil:
			cm, ok := configMaps[ef.ConfigMapRef.Name]
			if !ok {
				t.Errorf("Deployment %s reads ConfigMap %s, which is not rendered", name, ef.ConfigMapRef.Name)
				continue
			}
			for k := range cm.Data {
				if !documented[k] {
					t.Errorf("ConfigMap %s sets %s, which internal/config does not document", cm.Metadata.Name, k)
				}
				if slices.Contains(secretKeys, k) {
					t.Errorf("ConfigMap %s holds %s, a secret: it belongs in %s", cm.Metadata.Name, k, secretName)
				}
			}
		}
	}
	if secretRefs != 1 {
		t.Errorf("Deployment %s reads %d Secrets, want %s", name, secretRefs, secretName)
	}
}

// checkContainerHardening: non-root, read-only root, no privilege
// escalation, no capabilities, bounded resources.
func checkContainerHardening(t *testing.T, what string, pod podSpec, c container) {
	t.Helper()
	nonRoot := pod.SecurityContext.RunAsNonRoot
	if c.SecurityContext.RunAsNonRoot != nil {
		nonRoot = c.SecurityContext.RunAsNonRoot
	}
	sc := c.SecurityContext
	if nonRoot == nil || !*nonRoot {
		t.Errorf("%s may run as root", what)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s has a writable root filesystem", what)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s allows privilege escalation", what)
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s keeps capabilities (drop %v)", what, sc.Capabilities.Drop)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == nil {
			t.Errorf("%s requests no %s", what, r)
		}
	}
	if c.Resources.Limits["memory"] == nil {
		t.Errorf("%s has no memory limit", what)
	}
}

var (
	routesRE  = regexp.MustCompile(`(?s)routes\s*:?\s*\[(.*?)\]`)
	clusterRE = regexp.MustCompile(`(?m)^\s*cluster\s*\{`)
	storeRE   = regexp.MustCompile(`(?m)^\s*store_dir\s*:\s*(\S+)`)
	natsURLRE = regexp.MustCompile(`nats://\S+`)
)

func checkNATS(t *testing.T, byKind map[string]map[string]object, replicas int, pdbs map[string]object, budgetFor func(map[string]string) (object, bool), bins map[string]bool) {
	t.Helper()
	sts, ok := byKind["StatefulSet"]["nats"]
	if !ok {
		t.Fatal("no StatefulSet nats")
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != replicas {
		t.Errorf("StatefulSet nats: replicas %v, want %d", sts.Spec.Replicas, replicas)
	}
	if sts.Spec.PodManagementPolicy != "Parallel" {
		t.Error("StatefulSet nats starts its pods one by one; clustered servers wait for each other, so they must start in parallel")
	}
	headless, ok := byKind["Service"][sts.Spec.ServiceName]
	if !ok || headless.Spec.ClusterIP != "None" || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("StatefulSet nats: serviceName %q is not a headless Service publishing not-ready pods (routes must resolve before readiness)", sts.Spec.ServiceName)
	} else if !selects(t, mustMatchLabels(t, headless.Spec.Selector), sts.Spec.Template.Metadata.Labels) {
		t.Errorf("Service %s does not select the nats pods", headless.Metadata.Name)
	}
	pod := sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("StatefulSet nats: %d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	checkContainerHardening(t, "StatefulSet nats", pod, c)
	if len(c.Command) < 3 || c.Command[0] != "/usr/local/bin/nats-server" || !bins["nats-server"] || c.Command[1] != "--config" {
		t.Fatalf("StatefulSet nats runs %v, want /usr/local/bin/nats-server --config FILE", c.Command)
	}
	for _, p := range []struct {
		name  string
		probe *probe
	}{{"startup", c.StartupProbe}, {"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || c.port(p.probe.HTTPGet.Port) == 0 || !strings.HasPrefix(p.probe.HTTPGet.Path, "/healthz") {
			t.Errorf("StatefulSet nats: no %s probe on /healthz of a container port", p.name)
		}
	}
	if len(pdbs) > 0 {
		if p, ok := budgetFor(sts.Spec.Template.Metadata.Labels); !ok || p.Spec.MaxUnavailable != float64(1) {
			t.Errorf("StatefulSet nats needs a PodDisruptionBudget with maxUnavailable 1 (one server down keeps the quorum)")
		}
	}

	checkNATSNetworkPolicy(t, byKind, sts, c)

	// The configuration file the container reads, from its ConfigMap.
	confPath := c.Command[2]
	var conf string
	for _, m := range c.VolumeMounts {
		if filepath.Dir(confPath) != m.MountPath {
			continue
		}
		for _, vol := range pod.Volumes {
			if vol.Name == m.Name && vol.ConfigMap != nil {
				conf = byKind["ConfigMap"][vol.ConfigMap.Name].Data[filepath.Base(confPath)]
			}
		}
	}
	if conf == "" {
		t.Fatalf("StatefulSet nats: %s does not come from a rendered ConfigMap", confPath)
	}
	if !strings.Contains(conf, "jetstream") {
		t.Error("nats.conf does not enable JetStream")
	}
	checkNATSUsers(t, byKind, pod, c, conf, confPath)
	if m := storeRE.FindStringSubmatch(conf); m == nil || !mountedFromClaim(sts, c, m[1]) {
		t.Errorf("nats.conf's store_dir is not on the StatefulSet's volume claim")
	}

	// The servers' stable names, which the routes and NATS_URL must use.
	var pods []string
	for i := range replicas {
		pods = append(pods, fmt.Sprintf("%s-%d.%s", sts.Metadata.Name, i, sts.Spec.ServiceName))
	}
	if replicas == 1 {
		if clusterRE.MatchString(conf) {
			t.Error("a single NATS server is clustered: it would wait for routes forever")
		}
	} else {
		m := routesRE.FindStringSubmatch(conf)
		if m == nil || !clusterRE.MatchString(conf) {
			t.Fatal("nats.conf has no cluster routes")
		}
		if got := hostsOf(t, natsURLRE.FindAllString(m[1], -1), c.port("cluster")); !slices.Equal(got, pods) {
			t.Errorf("nats.conf routes to %v, want every server %v on the cluster port", got, pods)
		}
	}

	// What the services connect to: every server, by its stable name, and
	// replicas the cluster can hold.
	cfg := configFor(t, byKind)
	if got := hostsOf(t, strings.Split(cfg.Data["NATS_URL"], ","), c.port("client")); !slices.Equal(got, pods) {
		t.Errorf("NATS_URL lists %v, want every server %v on the client port", got, pods)
	}
	if cfg.Data["TENANCY_REPLICAS"] != strconv.Itoa(replicas) {
		t.Errorf("TENANCY_REPLICAS=%q with %d NATS servers", cfg.Data["TENANCY_REPLICAS"], replicas)
	}
}

// checkNATSUsers: nats.conf includes nats-auth.conf from the same
// ConfigMap, unchanged; the container gets the users' passwords from the
// Secret; and the services log in as tenancy with the same password.
func checkNATSUsers(t *testing.T, byKind map[string]map[string]object, pod podSpec, c container, conf, confPath string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^include\s+\.?/?nats-auth\.conf\s*$`).MatchString(conf) {
		t.Error("nats.conf does not include nats-auth.conf: NATS would admit anyone")
	}
	var auth string
	for _, vol := range pod.Volumes {
		if vol.ConfigMap != nil {
			if a, ok := byKind["ConfigMap"][vol.ConfigMap.Name].Data["nats-auth.conf"]; ok && byKind["ConfigMap"][vol.ConfigMap.Name].Data[filepath.Base(confPath)] != "" {
				auth = a
			}
		}
	}
	want, err := os.ReadFile(filepath.Join("kubernetes", "base", "nats-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if auth != string(want) {
		t.Error("the nats ConfigMap does not carry nats-auth.conf next to nats.conf")
	}
	got := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == secretName {
			got[e.Name] = e.ValueFrom.SecretKeyRef.Key
		}
	}
	if !maps.Equal(got, natsServerEnv) {
		t.Errorf("the nats container's passwords from %s: %v, want %v", secretName, got, natsServerEnv)
	}
	cfg := configFor(t, byKind)
	if cfg.Data["NATS_USER"] != "tenancy" {
		t.Errorf("NATS_USER=%q in the services' ConfigMap, want tenancy (the password is the Secret's NATS_PASSWORD)", cfg.Data["NATS_USER"])
	}
}

// checkNATSNetworkPolicy: on top of NATS's users, a policy admits clients
// only from Tenancy's pods (all of them) and routes only from the other
// servers.
func checkNATSNetworkPolicy(t *testing.T, byKind map[string]map[string]object, sts object, c container) {
	t.Helper()
	var policy *object
	for _, p := range byKind["NetworkPolicy"] {
		if selects(t, p.Spec.PodSelector, sts.Spec.Template.Metadata.Labels) {
			policy = &p
		}
	}
	if policy == nil {
		t.Error("no NetworkPolicy restricts who reaches NATS")
		return
	}
	admitted := map[int][]json.RawMessage{}
	for _, rule := range policy.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("NetworkPolicy %s has a rule open to every source or port", policy.Metadata.Name)
		}
		for _, port := range rule.Ports {
			n := c.port(port.Port)
			if n == 0 {
				t.Errorf("NetworkPolicy %s admits port %v, which the nats container does not expose", policy.Metadata.Name, port.Port)
			}
			for _, f := range rule.From {
				admitted[n] = append(admitted[n], f.PodSelector)
			}
		}
	}
	admits := func(port int, labels map[string]string) bool {
		for _, sel := range admitted[port] {
			if selects(t, sel, labels) {
				return true
			}
		}
		return false
	}
	for name := range tenancyDeployments {
		if d := byKind["Deployment"][name]; !admits(c.port("client"), d.Spec.Template.Metadata.Labels) {
			t.Errorf("NetworkPolicy %s keeps %s away from NATS", policy.Metadata.Name, name)
		}
	}
	if !admits(c.port("cluster"), sts.Spec.Template.Metadata.Labels) {
		t.Errorf("NetworkPolicy %s keeps the NATS servers from routing to each other", policy.Metadata.Name)
	}
}

// configFor returns the ConfigMap the api Deployment reads its
// configuration from.
func configFor(t *testing.T, byKind map[string]map[string]object) object {
	t.Helper()
	for _, ef := range byKind["Deployment"]["api"].Spec.Template.Spec.Containers[0].EnvFrom {
		if ef.ConfigMapRef != nil {
			return byKind["ConfigMap"][ef.ConfigMapRef.Name]
		}
	}
	t.Fatal("the api reads no ConfigMap")
	return object{}
}

// hostsOf returns the hosts of nats:// URLs, checking each uses port.
func hostsOf(t *testing.T, urls []string, port int) []string {
	t.Helper()
	var hosts []string
	for _, s := range urls {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Scheme != "nats" {
			t.Fatalf("%q is not a nats:// URL", s)
		}
		if u.Port() != strconv.Itoa(port) {
			t.Errorf("%s: port %s, want %d", s, u.Port(), port)
		}
		hosts = append(hosts, u.Hostname())
	}
	slices.Sort(hosts)
	return hosts
}

// mountedFromClaim reports whether dir is where the container mounts one of
// the StatefulSet's volume claim templates.
func mountedFromClaim(sts object, c container, dir string) bool {
	claims := map[string]bool{}
	for _, v := range sts.Spec.VolumeClaimTemplates {
		claims[v.Metadata.Name] = true
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == dir && claims[m.Name] {
			return true
		}
	}
	return false
}

var secretGeneratorRE = regexp.MustCompile(`(?m)^\s*secretGenerator\s*:`)

// TestSecretNotCommitted guards against a filled-in secrets file next to
// the example ending up in a commit: git must ignore it.
func TestSecretNotCommitted(t *testing.T) {
	ignore, err := os.ReadFile(filepath.Join("kubernetes", ".gitignore"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Fields(string(ignore)), "secrets.env") {
		t.Error("kubernetes/.gitignore does not ignore secrets.env")
	}
	// And no kustomization may generate a Secret: its input would be a
	// file of secrets next to the manifests.
	err = filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !slices.Contains([]string{".yaml", ".yml"}, filepath.Ext(path)) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if secretGeneratorRE.Match(b) {
			t.Errorf("%s generates a Secret from a file; create %s out of band instead", path, secretName)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
