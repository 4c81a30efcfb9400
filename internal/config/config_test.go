package config

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestAPIConfigValidation(t *testing.T) {
	_, err := LoadAPI(env(map[string]string{"TENANCY_REPLICAS": "x"}))
	if err == nil || !strings.Contains(err.Error(), "TENANCY_REPLICAS") {
		t.Fatalf("bad number: %v", err)
	}
	_, err = LoadAPI(env(nil))
	for _, want := range []string{"NATS_URL", "TENANCY_SIGNING_KEY", "TENANCY_MASTER_KEY", "OIDC_ISSUER_URL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %s not reported: %v", want, err)
		}
	}
	c, err := LoadAPI(env(map[string]string{"NATS_URL": "nats://a", "TENANCY_SIGNING_KEY": "k", "TENANCY_MASTER_KEY": "m", "OIDC_ISSUER_URL": "https://i"}))
	if err != nil || c.HTTPAddr != ":8080" || c.OIDCAudience != "tenancy" || c.NATS.Stream != "TENANCY" || c.NATS.Replicas != 1 {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	_, err = LoadAPI(env(map[string]string{"NATS_URL": "nats://a", "TENANCY_SIGNING_KEY": "k", "TENANCY_MASTER_KEY": "m", "OIDC_ISSUER_URL": "https://i", "NATS_TLS_CERT": "c"}))
	if err == nil || !strings.Contains(err.Error(), "NATS_TLS_KEY") {
		t.Fatalf("half a TLS pair: %v", err)
	}
}

var envNameRE = regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")

// TestReadmeDocumentsEveryVariable keeps the README's configuration table
// and the code in step.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start, end := strings.Index(section, "## Configuration"), strings.Index(section, "## API")
	if start < 0 || end < start {
		t.Fatal("README has no Configuration section before API")
	}
	section = section[start:end]
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		if m := envNameRE.FindStringSubmatch(line); m != nil && strings.HasPrefix(line, "| `") {
			documented = append(documented, m[1])
		}
	}
	var known []string
	for _, v := range Vars {
		known = append(known, v.Name)
		if !slices.Contains(documented, v.Name) {
			t.Errorf("%s is read by the code but not in the README's configuration table", v.Name)
		}
	}
	for _, d := range documented {
		if !slices.Contains(known, d) {
			t.Errorf("the README documents %s, which no code reads", d)
		}
	}
}

// TestComposeUsesKnownVariables checks docker-compose.yml (which cannot run
// here) for Tenancy variables the code does not read and for commands that
// are not binaries of this repository.
func TestComposeUsesKnownVariables(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	known := map[string]bool{}
	for _, v := range Vars {
		known[v.Name] = true
	}
	bins, _ := filepath.Glob(filepath.Join("..", "..", "cmd", "*"))
	binaries := map[string]bool{"nats-server": true}
	for _, b := range bins {
		binaries[filepath.Base(b)] = true
	}
	// nats-server reads its users' passwords, as its configuration says.
	natsAuth, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "base", "nats-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for name, svc := range doc.Services {
		natsServer := slices.Contains(svc.Entrypoint, "/usr/local/bin/nats-server")
		for k := range svc.Environment {
			ours := strings.HasPrefix(k, "TENANCY_") || strings.HasPrefix(k, "NATS_") || strings.HasPrefix(k, "OIDC_") || k == "DATABASE_URL" || k == "LOG_LEVEL"
			if natsServer {
				if !strings.Contains(string(natsAuth), "$"+k) {
					t.Errorf("service %s sets %s, which nats-auth.conf does not read", name, k)
				}
				continue
			}
			if ours && !known[k] {
				t.Errorf("service %s sets %s, which no code reads", name, k)
			}
		}
		for _, argv := range [][]string{svc.Command, svc.Entrypoint} {
			if len(argv) > 0 && strings.HasPrefix(argv[0], "/usr/local/bin/") && !binaries[strings.TrimPrefix(argv[0], "/usr/local/bin/")] {
				t.Errorf("service %s runs %s, which this repository does not build", name, argv[0])
			}
		}
	}
}

// worker is the least a worker binary needs.
func worker(extra map[string]string) Getenv {
	m := map[string]string{"NATS_URL": "nats://a", "TENANCY_SIGNING_KEY": "k", "TENANCY_MASTER_KEY": "m"}
	for k, v := range extra {
		m[k] = v
	}
	return env(m)
}

func TestWebhookConfig(t *testing.T) {
	c, err := LoadWebhooker(worker(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Webhooks.AllowHTTP || len(c.Webhooks.AllowCIDRs) != 0 || c.Webhooks.Timeout != 15*time.Second ||
		!slices.Equal(c.Webhooks.Schedule, DefaultRetrySchedule) || c.Webhooks.MaxBody != 256<<10 || c.Webhooks.DisableAfter != 120*time.Hour {
		t.Fatalf("worker defaults: %+v", c.Webhooks)
	}
	d, err := LoadDev(env(map[string]string{"WEBHOOK_ALLOW_CIDRS": "10.1.0.0/16"}))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Webhooks.AllowHTTP || !slices.Equal(d.Webhooks.AllowCIDRs, []string{"10.1.0.0/16"}) {
		t.Fatalf("dev with WEBHOOK_ALLOW_CIDRS allows exactly what is configured (not loopback too): %+v", d.Webhooks)
	}
	d, err = LoadDev(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Webhooks.AllowHTTP || !slices.Equal(d.Webhooks.AllowCIDRs, []string{"127.0.0.0/8", "::1/128"}) {
		t.Fatalf("dev allows loopback and http by default: %+v", d.Webhooks)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"WEBHOOK_ALLOW_CIDRS", "10.0.0.5/8", "10.0.0.5/8"},
		{"WEBHOOK_ALLOW_HTTP", "maybe", "true or false"},
		{"WEBHOOK_RETRY_SCHEDULE", "0s,5x", "5x"},
		{"WEBHOOK_RETRY_SCHEDULE", "5s,10s", "must be 0s"},
		{"WEBHOOK_TIMEOUT", "1ms", "at least 100ms"},
		{"WEBHOOK_MAX_BODY", "10", "at least 4096"},
	} {
		if _, err := LoadWebhooker(worker(map[string]string{tc.name: tc.value})); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%s: error %v, want it to mention %q", tc.name, tc.value, err, tc.want)
		}
	}
	c, err = LoadWebhooker(worker(map[string]string{"WEBHOOK_RETRY_SCHEDULE": "0s, 1s,2m"}))
	if err != nil || !slices.Equal(c.Webhooks.Schedule, []time.Duration{0, time.Second, 2 * time.Minute}) {
		t.Fatalf("custom schedule: %v %v", c.Webhooks.Schedule, err)
	}
}

// TestEveryBinaryValidates: each binary's configuration reports every bad
// variable at once, and its defaults are the ones Vars documents.
func TestEveryBinaryValidates(t *testing.T) {
	bad := map[string]string{"TENANCY_REPLICAS": "9", "LOG_LEVEL": "info", "TENANCY_READ_WAIT": "soon", "WEBHOOK_MAX_BODY": "x", "BILLING_URL": "https://b"}
	for _, tc := range []struct {
		binary string
		load   func(Getenv) (string, error)
		want   []string
	}{
		{"api", func(g Getenv) (string, error) { c, err := LoadAPI(g); return c.HTTPAddr, err },
			[]string{"NATS_URL", "TENANCY_SIGNING_KEY", "TENANCY_MASTER_KEY", "OIDC_ISSUER_URL", "TENANCY_REPLICAS=9", "TENANCY_READ_WAIT", "WEBHOOK_MAX_BODY", "BILLING_TOKEN"}},
		{"projector", func(g Getenv) (string, error) { c, err := LoadProjector(g); return c.HTTPAddr, err },
			[]string{"NATS_URL", "TENANCY_SIGNING_KEY", "TENANCY_MASTER_KEY", "TENANCY_REPLICAS=9"}},
		{"provisioner", func(g Getenv) (string, error) { c, err := LoadProvisioner(g); return c.HTTPAddr, err },
			[]string{"NATS_URL", "TENANCY_SIGNING_KEY", "TENANCY_REPLICAS=9", "BILLING_TOKEN"}},
		{"webhooker", func(g Getenv) (string, error) { c, err := LoadWebhooker(g); return c.HTTPAddr, err },
			[]string{"NATS_URL", "TENANCY_MASTER_KEY", "TENANCY_REPLICAS=9", "WEBHOOK_MAX_BODY"}},
		{"dev", func(g Getenv) (string, error) { c, err := LoadDev(g); return c.HTTPAddr, err },
			[]string{"TENANCY_READ_WAIT", "WEBHOOK_MAX_BODY", "BILLING_TOKEN"}},
	} {
		t.Run(tc.binary, func(t *testing.T) {
			_, err := tc.load(env(bad))
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("%s not reported: %v", w, err)
				}
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("problems are not on one line: %q", err)
			}
			addr, _ := tc.load(env(nil))
			if addr != httpAddrs[tc.binary] {
				t.Errorf("default address %q, want %q", addr, httpAddrs[tc.binary])
			}
		})
	}
}

func TestVarsDocumentTheDefaults(t *testing.T) {
	docs := map[string]string{}
	for _, v := range Vars {
		docs[v.Name] = v.Default
	}
	for name, value := range defaults {
		doc, ok := docs[name]
		if !ok {
			t.Errorf("%s has a default but is not in Vars", name)
			continue
		}
		if strings.Contains(doc, value) {
			continue
		}
		t.Errorf("Vars says %s defaults to %q; the code uses %q", name, doc, value)
	}
	for binary, addr := range httpAddrs {
		if !strings.Contains(docs["TENANCY_HTTP_ADDR"], addr+" ("+binary+")") {
			t.Errorf("Vars does not document %s's default address %s", binary, addr)
		}
	}
}
