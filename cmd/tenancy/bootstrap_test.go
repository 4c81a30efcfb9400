package main

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// TestDevBootstrap: a fresh `tenancy dev` prints the root tenant with a
// generated administrator, lists the root customer, and makes the root and
// shared tenants active; a restart on the same data names the same
// administrator and makes nothing again.
func TestDevBootstrap(t *testing.T) {
	dir, p, token, client := startDevTest(t)
	m := regexp.MustCompile(`^root \(administrator (admin-[0-9a-f]+@tenancy\.test)\), shared tenant shared`).FindStringSubmatch(p.root)
	if m == nil {
		t.Fatalf("the banner says %q of the root tenant", p.root)
	}
	admin := m[1]
	t.Logf("banner: root tenant %s", p.root)
	status, _, body, err := call(client, p.api, token, "GET", "/v1/customers", "")
	if err != nil || status != 200 || !bytes.Contains(body, []byte(domain.RootCustomerID)) {
		// The read model may still be catching up: wait on it.
		status, body, err = waitList(client, p.api, token, "/v1/customers", domain.RootCustomerID)
	}
	if err != nil || status != 200 || !bytes.Contains(body, []byte(`"root":true`)) {
		t.Fatalf("a fresh dev's customers: %d %v %s", status, err, body)
	}
	for _, id := range []string{domain.RootTenantID, domain.SharedTenantID} {
		if !waitState(client, p.api, token, id, "active") {
			t.Fatalf("platform tenant %s did not become active", id)
		}
	}
	_, h, _, err := call(client, p.api, token, "GET", "/v1/tenants/"+domain.RootTenantID, "")
	if err != nil {
		t.Fatal(err)
	}
	version := h.Get("ETag")
	stopDev(t, p)

	p2 := startDev(t, dir)
	if want := fmt.Sprintf("root (administrator %s)", admin); !bytes.HasPrefix([]byte(p2.root), []byte(want)) {
		t.Fatalf("after a restart the banner says %q, want it to start with %q", p2.root, want)
	}
	_, h, _, err = call(client, p2.api, readToken(t, dir), "GET", "/v1/tenants/"+domain.RootTenantID, "")
	if err != nil || h.Get("ETag") != version {
		t.Fatalf("the restart changed the root tenant: ETag %s, was %s (%v)", h.Get("ETag"), version, err)
	}
}

// waitList GETs path until its answer holds want, for a read model that
// may still be catching up.
func waitList(client *http.Client, api, token, path, want string) (int, []byte, error) {
	var status int
	var body []byte
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		status, _, body, err = call(client, api, token, "GET", path, "")
		if err == nil && status == 200 && bytes.Contains(body, []byte(want)) {
			break
		}
	}
	return status, body, err
}

// waitState polls a tenant until it is in state, reporting whether it got
// there in time.
func waitState(client *http.Client, api, token, id, state string) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if status, _, body, err := call(client, api, token, "GET", "/v1/tenants/"+id, ""); err == nil && status == 200 &&
			bytes.Contains(body, []byte(`"state":"`+state+`"`)) {
			return true
		}
	}
	return false
}
