package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildBinaries compiles the four services, the CLI and nats-server (the
// version pinned in go.mod) into a temporary directory: the system test runs
// what users run, as separate processes.
func buildBinaries(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	dir := filepath.Dir(strings.TrimSpace(string(root)))
	bin := t.TempDir()
	started := time.Now()
	for _, args := range [][]string{
		{"build", "-o", bin + "/", "./cmd/api", "./cmd/projector", "./cmd/provisioner", "./cmd/webhooker", "./cmd/tenancy"},
		{"build", "-o", filepath.Join(bin, "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Logf("built the services, the CLI and nats-server in %s", time.Since(started).Round(time.Second))
	return bin
}

// freePorts returns n distinct loopback ports nobody listens on now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	out := make([]int, n)
	for i := range out {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out[i] = l.Addr().(*net.TCPAddr).Port
	}
	return out
}

// proc is a child process that can be killed with SIGKILL and started
// again with the same command line, its output appended to one log file.
type proc struct {
	name string
	path string
	args []string
	env  []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func newProc(t *testing.T, logDir, name, path string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, path: path, args: args, env: env, log: filepath.Join(logDir, name+".log")}
	t.Cleanup(p.kill)
	return p
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

// kill sends SIGKILL and waits for the process to be gone (idempotent).
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tail returns the end of the process's log.
func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitReady polls url until it answers 200.
func waitReady(t *testing.T, p *proc, url string, within time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(within)
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !p.running() {
			t.Fatalf("%s exited before it was ready:\n%s", p.name, p.tail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s within %s:\n%s", p.name, url, within, p.tail(4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cluster is a JetStream cluster of nats-server processes on loopback,
// with the users and permissions the deployments give nats-server
// (deploy/kubernetes/base/nats-auth.conf).
type cluster struct {
	nodes  []*proc
	client []int
	mon    []int
	// Service and Reader are the users' passwords.
	Service, Reader string
}

// authConf is the deployments' NATS users and permissions file.
func authConf(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "deploy", "kubernetes", "base", "nats-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startCluster(t *testing.T, bin, logDir string, n int) *cluster {
	t.Helper()
	ports := freePorts(t, 3*n)
	c := &cluster{client: ports[:n], mon: ports[2*n:], Service: "systest-service-" + strconv.Itoa(ports[0]), Reader: "systest-reader-" + strconv.Itoa(ports[1])}
	env := append(os.Environ(), "TENANCY_NATS_PASSWORD="+c.Service, "TENANCY_NATS_READER_PASSWORD="+c.Reader)
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(ports[n+i])
	}
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		store := filepath.Join(t.TempDir(), name)
		p := newProc(t, logDir, name, filepath.Join(bin, "nats-server"), env,
			"--config", authConf(t), "--server_name", name, "--addr", "127.0.0.1", "--port", strconv.Itoa(c.client[i]), "--http_port", strconv.Itoa(c.mon[i]),
			"--jetstream", "--store_dir", store,
			"--cluster_name", "tenancy-systest", "--cluster", routes[i], "--routes", strings.Join(routes, ","))
		c.nodes = append(c.nodes, p)
	}
	for _, p := range c.nodes {
		p.start(t)
	}
	for i := range n {
		c.waitHealthy(t, i, 60*time.Second)
	}
	c.waitMetaLeader(t, 60*time.Second)
	return c
}

// waitMetaLeader waits until every node knows the JetStream meta leader, so
// that the services' first stream and consumer requests can be answered.
func (c *cluster) waitMetaLeader(t *testing.T, within time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(within); ; {
		ready := 0
		for _, port := range c.mon {
			var jsz struct {
				Meta struct {
					Leader string `json:"leader"`
				} `json:"meta_cluster"`
			}
			if resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", port)); err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&jsz)
				resp.Body.Close()
			}
			if jsz.Meta.Leader != "" {
				ready++
			}
		}
		if ready == len(c.mon) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream meta leader after %s", within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitHealthy waits until node i reports JetStream healthy (a meta leader
// known, its streams current).
func (c *cluster) waitHealthy(t *testing.T, i int, within time.Duration) {
	t.Helper()
	waitReady(t, c.nodes[i], fmt.Sprintf("http://127.0.0.1:%d/healthz", c.mon[i]), within)
}

// URL is the NATS_URL naming every node.
func (c *cluster) URL() string {
	urls := make([]string, len(c.client))
	for i, p := range c.client {
		urls[i] = "nats://127.0.0.1:" + strconv.Itoa(p)
	}
	return strings.Join(urls, ",")
}

// runCLI runs the tenancy CLI and returns its output.
func runCLI(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "tenancy"), args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}
