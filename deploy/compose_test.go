package deploy

import (
	"context"
	"maps"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tenancyhq/tenancy/internal/config"
)

// tenancyServices are the compose services running Tenancy's own binaries
// with its configuration.
var tenancyServices = []string{"api", "projector", "provisioner", "webhooker"}

// testKeys are the variables docker-compose.yml refuses to start without.
var testKeys = map[string]string{
	"TENANCY_SIGNING_KEY":          "c2lnbmluZy1rZXktZm9yLXRlc3RzLW9ubHktMzJieXQ=",
	"TENANCY_MASTER_KEY":           "bWFzdGVyLWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGVz",
	"TENANCY_NATS_PASSWORD":        "service-password-for-tests",
	"TENANCY_NATS_READER_PASSWORD": "reader-password-for-tests",
}

// repoRoot is the repository root, where docker-compose.yml lives.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// loadCompose loads compose files (relative to the repository root) the
// way `docker compose` does, interpolating from env only: neither the
// machine's environment nor a .env file can make the test pass.
func loadCompose(t *testing.T, env map[string]string, files ...string) (*types.Project, error) {
	t.Helper()
	root := repoRoot(t)
	var paths, envList []string
	for _, f := range files {
		paths = append(paths, filepath.Join(root, f))
	}
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(paths, cli.WithWorkingDirectory(root), cli.WithEnv(envList))
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

func mustLoadCompose(t *testing.T, files ...string) *types.Project {
	t.Helper()
	p, err := loadCompose(t, testKeys, files...)
	if err != nil {
		t.Fatalf("%v does not load under the Compose specification: %v", files, err)
	}
	return p
}

// composeSetups are the supported ways to run compose.
var composeSetups = []struct {
	name  string
	files []string
}{
	{"single node", []string{"docker-compose.yml"}},
	{"cluster", []string{"docker-compose.yml", "deploy/compose/cluster.yml"}},
}

// argv is what a service's container runs: the image's entrypoint unless
// the service replaces it, then the command.
func argv(s types.ServiceConfig) []string {
	if len(s.Entrypoint) > 0 {
		return append(slices.Clone(s.Entrypoint), s.Command...)
	}
	if s.Entrypoint != nil || len(s.Command) > 0 && strings.HasPrefix(s.Command[0], "/") {
		return s.Command
	}
	// Our image's ENTRYPOINT is the CLI.
	return append([]string{"/usr/local/bin/tenancy"}, s.Command...)
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// flagValue returns the value after --name in args.
func flagValue(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// builtBinaries lists what the Dockerfile installs in /usr/local/bin: one
// binary per cmd/<name> main package (it builds ./cmd/...) and nats-server.
func builtBinaries(t *testing.T) map[string]bool {
	t.Helper()
	root := repoRoot(t)
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	bins := map[string]bool{}
	if strings.Contains(string(dockerfile), "-o /out/nats-server github.com/nats-io/nats-server/v2") {
		bins["nats-server"] = true
	}
	if !strings.Contains(string(dockerfile), "-o /out/ ./cmd/...") {
		t.Fatal("the Dockerfile no longer builds ./cmd/... into /out/; update this test with how it builds the services")
	}
	dirs, err := filepath.Glob(filepath.Join(root, "cmd", "*", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		src, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		if regexp.MustCompile(`(?m)^package main$`).Match(src) {
			bins[filepath.Base(filepath.Dir(d))] = true
		}
	}
	return bins
}

// binaryOf checks that path is one of ours and returns its name.
func binaryOf(t *testing.T, bins map[string]bool, service, path string) string {
	t.Helper()
	name, ok := strings.CutPrefix(path, "/usr/local/bin/")
	if !ok || !bins[name] {
		t.Errorf("service %s runs %q, which the Dockerfile does not build (it builds %v)", service, path, slices.Sorted(maps.Keys(bins)))
	}
	return name
}

// portOf returns the port of a listen address like ":8080" or a URL.
func portOf(t *testing.T, s string) string {
	t.Helper()
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		return u.Port()
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		t.Fatalf("%q has no port", s)
	}
	return s[i+1:]
}

// natsNodes returns the hosts NATS_URL lists (comma-separated URLs).
func natsNodes(t *testing.T, natsURL string) []string {
	t.Helper()
	var hosts []string
	for _, u := range strings.Split(natsURL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Scheme != "nats" || p.Port() == "" {
			t.Fatalf("NATS_URL entry %q is not nats://host:port", u)
		}
		hosts = append(hosts, p.Hostname())
	}
	return hosts
}

func TestComposeServices(t *testing.T) {
	documented := map[string]bool{}
	for _, v := range config.Vars {
		documented[v.Name] = true
	}
	receiverSrc, err := os.ReadFile(filepath.Join(repoRoot(t), "cmd", "demo-receiver", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	bins := builtBinaries(t)
	for _, setup := range composeSetups {
		t.Run(setup.name, func(t *testing.T) {
			p := mustLoadCompose(t, setup.files...)
			for _, name := range append(slices.Clone(tenancyServices), "nats", "postgres", "keycloak", "demo-receiver") {
				if _, ok := p.Services[name]; !ok {
					t.Fatalf("no %s service", name)
				}
			}

			published := map[string]string{}
			for name, s := range p.Services {
				hc := s.HealthCheck
				if hc == nil || hc.Disable || len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL") {
					t.Errorf("service %s has no healthcheck; depends_on conditions need one", name)
				}
				for dep, d := range s.DependsOn {
					if _, ok := p.Services[dep]; !ok {
						t.Errorf("service %s depends on %s, which does not exist", name, dep)
					}
					if d.Condition != types.ServiceConditionHealthy {
						t.Errorf("service %s waits for %s to be %q, want service_healthy: started is not ready", name, dep, d.Condition)
					}
				}
				for _, port := range s.Ports {
					key := port.HostIP + ":" + port.Published + "/" + port.Protocol
					if other, dup := published[key]; dup {
						t.Errorf("services %s and %s both publish host port %s", other, name, key)
					}
					published[key] = name
				}
				if s.Image == "tenancy:dev" {
					if s.Build == nil || s.Build.Context != repoRoot(t) {
						t.Errorf("service %s uses tenancy:dev but does not build it from the repository root (%+v)", name, s.Build)
					}
					binaryOf(t, bins, name, argv(s)[0])
				}
				if hc != nil && len(hc.Test) > 1 && hc.Test[0] == "CMD" && strings.HasPrefix(hc.Test[1], "/usr/local/bin/") {
					binaryOf(t, bins, name+" (healthcheck)", hc.Test[1])
				}
			}

			for _, name := range tenancyServices {
				s := p.Services[name]
				args := argv(s)
				if bin := strings.TrimPrefix(args[0], "/usr/local/bin/"); bin != name {
					t.Errorf("service %s runs %s", name, bin)
				}
				for k := range s.Environment {
					if !documented[k] {
						t.Errorf("service %s sets %s, which internal/config does not document (config.Vars)", name, k)
					}
				}
				for _, k := range []string{"NATS_URL", "DATABASE_URL", "TENANCY_SIGNING_KEY", "TENANCY_MASTER_KEY", "TENANCY_HTTP_ADDR"} {
					if env(s, k) == "" {
						t.Errorf("service %s does not set %s", name, k)
					}
				}
				// Every NATS server the service may connect to must be up
				// first, and so must PostgreSQL for a service that uses it.
				nodes := natsNodes(t, env(s, "NATS_URL"))
				wants := slices.Clone(nodes)
				if env(s, "DATABASE_URL") != "" {
					wants = append(wants, "postgres")
				}
				for _, w := range wants {
					if s.DependsOn[w].Condition != types.ServiceConditionHealthy {
						t.Errorf("service %s does not wait for %s to be healthy", name, w)
					}
				}
				// A replica count above the number of servers cannot be
				// placed; fewer wastes the cluster's redundancy.
				replicas := env(s, "TENANCY_REPLICAS")
				if replicas == "" {
					replicas = "1"
				}
				if want := len(nodes); replicas != strconv.Itoa(want) {
					t.Errorf("service %s: TENANCY_REPLICAS=%s with %d NATS servers in NATS_URL", name, replicas, want)
				}
				// The healthcheck must probe the port the service listens on.
				if hc := s.HealthCheck; hc != nil && len(hc.Test) > 3 {
					if got, want := portOf(t, hc.Test[3]), portOf(t, env(s, "TENANCY_HTTP_ADDR")); got != want {
						t.Errorf("service %s listens on %s but its healthcheck probes port %s", name, want, got)
					}
				}
			}

			// The NATS servers: the ones NATS_URL names, each a nats-server
			// with JetStream, a unique name and its own volume; in a
			// cluster every one routes to every one.
			nodes := natsNodes(t, env(p.Services["api"], "NATS_URL"))
			names, volumes := map[string]bool{}, map[string]bool{}
			for _, n := range nodes {
				s, ok := p.Services[n]
				if !ok {
					t.Fatalf("NATS_URL names %s, which is not a service", n)
				}
				args := argv(s)
				if binaryOf(t, bins, n, args[0]) != "nats-server" || !slices.Contains(args, "--jetstream") {
					t.Errorf("service %s is not nats-server with JetStream: %v", n, args)
				}
				if hc := s.HealthCheck; hc != nil && len(hc.Test) > 3 && portOf(t, hc.Test[3]) != flagValue(args, "--http_port") {
					t.Errorf("service %s: healthcheck %s does not probe --http_port %s", n, hc.Test[3], flagValue(args, "--http_port"))
				}
				name := flagValue(args, "--server_name")
				if name == "" || names[name] {
					t.Errorf("service %s: server name %q missing or not unique", n, name)
				}
				names[name] = true
				var store, auth *types.ServiceVolumeConfig
				for i, v := range s.Volumes {
					switch v.Target {
					case flagValue(args, "--store_dir"):
						store = &s.Volumes[i]
					case flagValue(args, "--config"):
						auth = &s.Volumes[i]
					}
				}
				if store == nil || store.Type != types.VolumeTypeVolume || volumes[store.Source] {
					t.Errorf("service %s does not keep its store (%s) on a volume of its own: %+v", n, flagValue(args, "--store_dir"), s.Volumes)
				} else {
					volumes[store.Source] = true
				}
				// Its users and permissions: the deployments' file, and the
				// services log in with the password it is given.
				if auth == nil || !auth.ReadOnly || auth.Source != filepath.Join(repoRoot(t), "deploy", "kubernetes", "base", "nats-auth.conf") {
					t.Errorf("service %s does not read its users from deploy/kubernetes/base/nats-auth.conf (--config %q): %+v", n, flagValue(args, "--config"), s.Volumes)
				}
				if env(s, "TENANCY_NATS_PASSWORD") != testKeys["TENANCY_NATS_PASSWORD"] || env(s, "TENANCY_NATS_READER_PASSWORD") != testKeys["TENANCY_NATS_READER_PASSWORD"] {
					t.Errorf("service %s lacks the users' passwords", n)
				}
				for _, svc := range tenancyServices {
					if env(p.Services[svc], "NATS_USER") != "tenancy" || env(p.Services[svc], "NATS_PASSWORD") != env(s, "TENANCY_NATS_PASSWORD") {
						t.Errorf("%s does not log in to NATS as tenancy with its password", svc)
					}
				}
				if len(nodes) == 1 {
					if flagValue(args, "--cluster") != "" {
						t.Errorf("the single node %s is clustered: it would wait for routes forever", n)
					}
					continue
				}
				var routed []string
				for _, r := range strings.Split(flagValue(args, "--routes"), ",") {
					u, err := url.Parse(r)
					if err != nil {
						t.Fatal(err)
					}
					routed = append(routed, u.Hostname())
					if u.Port() != portOf(t, flagValue(args, "--cluster")) {
						t.Errorf("service %s routes to %s, not the cluster port %s", n, r, portOf(t, flagValue(args, "--cluster")))
					}
				}
				slices.Sort(routed)
				if want := slices.Sorted(slices.Values(nodes)); !slices.Equal(routed, want) {
					t.Errorf("service %s routes to %v, want every node %v", n, routed, want)
				}
				if flagValue(args, "--cluster_name") == "" {
					t.Errorf("service %s has no cluster name", n)
				}
			}

			// Webhooks: the webhooker may reach exactly where the demo
			// receiver lives, and plain http is allowed where the
			// subscription is created (api) and used (webhooker).
			recv, hook := p.Services["demo-receiver"], p.Services["webhooker"]
			for k := range recv.Environment {
				if !strings.Contains(string(receiverSrc), `getenv("`+k+`")`) {
					t.Errorf("demo-receiver sets %s, which cmd/demo-receiver does not read", k)
				}
			}
			if hc := recv.HealthCheck; hc != nil && len(hc.Test) > 3 && portOf(t, hc.Test[3]) != portOf(t, env(recv, "RECEIVER_ADDR")) {
				t.Errorf("demo-receiver listens on %s but its healthcheck probes %s", env(recv, "RECEIVER_ADDR"), hc.Test[3])
			}
			allowed := strings.Split(env(hook, "WEBHOOK_ALLOW_CIDRS"), ",")
			if len(recv.Networks) == 0 {
				t.Fatal("demo-receiver is on the default network, with postgres and nats: put it on a network of its own")
			}
			for netName := range recv.Networks {
				if _, ok := hook.Networks[netName]; !ok {
					t.Errorf("the webhooker is not on network %s, where demo-receiver is", netName)
				}
				cfg := p.Networks[netName].Ipam.Config
				if len(cfg) == 0 {
					t.Errorf("network %s has no fixed subnet for WEBHOOK_ALLOW_CIDRS to name", netName)
				}
				for _, pool := range cfg {
					if !slices.Contains(allowed, pool.Subnet) {
						t.Errorf("WEBHOOK_ALLOW_CIDRS=%s does not allow network %s (%s)", env(hook, "WEBHOOK_ALLOW_CIDRS"), netName, pool.Subnet)
					}
				}
			}
			for _, a := range allowed {
				pfx, err := netip.ParsePrefix(strings.TrimSpace(a))
				if err != nil || pfx.Bits() < 16 {
					t.Errorf("WEBHOOK_ALLOW_CIDRS entry %q is not a narrow CIDR", a)
				}
			}
			for _, n := range []string{"api", "webhooker"} {
				if env(p.Services[n], "WEBHOOK_ALLOW_HTTP") != "true" {
					t.Errorf("%s refuses http:// subscriptions, so http://demo-receiver:9000/ cannot be used", n)
				}
			}
		})
	}
}

// TestComposeRequiresKeys checks the ${VAR:?} guards: compose must refuse
// to start the services without the keys instead of starting them broken.
func TestComposeRequiresKeys(t *testing.T) {
	for _, setup := range composeSetups {
		for _, tc := range []struct {
			name    string
			unset   string
			wantErr string
		}{
			{"both keys", "", ""},
			{"no signing key", "TENANCY_SIGNING_KEY", "export TENANCY_SIGNING_KEY"},
			{"no master key", "TENANCY_MASTER_KEY", "export TENANCY_MASTER_KEY"},
		} {
			t.Run(setup.name+"/"+tc.name, func(t *testing.T) {
				vars := map[string]string{}
				for k, v := range testKeys {
					if k != tc.unset {
						vars[k] = v
					}
				}
				p, err := loadCompose(t, vars, setup.files...)
				if tc.wantErr == "" {
					if err != nil {
						t.Fatal(err)
					}
					for _, name := range tenancyServices {
						if got := vars["TENANCY_SIGNING_KEY"]; *p.Services[name].Environment["TENANCY_SIGNING_KEY"] != got {
							t.Errorf("service %s does not get the signing key from the environment", name)
						}
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loading without %s: error %v, want one saying %q", tc.unset, err, tc.wantErr)
				}
			})
		}
	}
}
