package natsembed_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tenancyhq/tenancy/internal/eventstore"
	"github.com/tenancyhq/tenancy/internal/natsembed"
)

// TestDeployedPermissionsMatch checks that the nats-server configuration
// the deployments use grants what natsembed grants `tenancy dev`.
func TestDeployedPermissionsMatch(t *testing.T) {
	t.Setenv("TENANCY_NATS_PASSWORD", "service-secret")
	t.Setenv("TENANCY_NATS_READER_PASSWORD", "reader-secret")
	t.Setenv("POD_NAME", "nats-0")
	k8s := filepath.Join("..", "..", "deploy", "kubernetes")
	auth, err := os.ReadFile(filepath.Join(k8s, "base", "nats-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	// The Kubernetes servers' whole configurations include it, mounted
	// side by side from one ConfigMap.
	for _, conf := range []string{"base/nats.conf", "overlays/dev/nats.conf"} {
		b, err := os.ReadFile(filepath.Join(k8s, conf))
		if err != nil {
			t.Fatal(err)
		}
		mount := t.TempDir()
		_ = os.WriteFile(filepath.Join(mount, "nats.conf"), b, 0o600)
		_ = os.WriteFile(filepath.Join(mount, "nats-auth.conf"), auth, 0o600)
		opts, err := server.ProcessConfigFile(filepath.Join(mount, "nats.conf"))
		if err != nil {
			t.Errorf("%s: %v", conf, err)
		} else if len(opts.Users) != 2 {
			t.Errorf("%s: %d users, want nats-auth.conf's 2", conf, len(opts.Users))
		}
	}
	opts, err := server.ProcessConfigFile(filepath.Join("..", "..", "deploy", "kubernetes", "base", "nats-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	if len(users) != 2 || users[natsembed.ServiceUser] == nil || users[natsembed.ReaderUser] == nil {
		t.Fatalf("users in nats-auth.conf: %v", users)
	}
	if u := users[natsembed.ServiceUser]; u.Password != "service-secret" || u.Permissions != nil {
		t.Errorf("service user: %+v", u)
	}
	r := users[natsembed.ReaderUser]
	if r.Password != "reader-secret" || !reflect.DeepEqual(r.Permissions, natsembed.ReaderPermissions()) {
		t.Errorf("reader permissions in nats-auth.conf:\n%+v %+v\nwant\n%+v %+v", r.Permissions.Publish, r.Permissions.Subscribe,
			natsembed.ReaderPermissions().Publish, natsembed.ReaderPermissions().Subscribe)
	}
}

// TestOnlyTheServiceUserWrites checks the permission set on a running
// server: no anonymous connection, and a reader that reads the log but
// cannot append, delete, purge, manage consumers, write KV or listen on
// the services' inboxes.
func TestOnlyTheServiceUserWrites(t *testing.T) {
	users := &natsembed.Users{Service: "s3rvice", Reader: "r3ader"}
	s, err := natsembed.Start(natsembed.Options{StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	if nc, err := nats.Connect(s.ClientURL()); err == nil {
		nc.Close()
		t.Fatal("a connection without credentials was accepted")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("anonymous connection: %v", err)
	}
	if nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(natsembed.ServiceUser, "wrong")); err == nil {
		nc.Close()
		t.Fatal("a wrong password was accepted")
	}

	svc, err := nats.Connect(s.ClientURL(), nats.UserInfo(natsembed.ServiceUser, users.Service))
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	sjs, _ := jetstream.New(svc)
	if _, err := eventstore.EnsureStream(ctx, sjs, eventstore.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.Publish(ctx, "tenancy.evt.t.tenant.a", []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	kv, err := sjs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "TENANCY_TEST"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("service")); err != nil {
		t.Fatal(err)
	}

	violations := make(chan string, 16)
	rd, err := nats.Connect(s.ClientURL(), nats.UserInfo(natsembed.ReaderUser, users.Reader), nats.CustomInboxPrefix(natsembed.ReaderInboxPrefix),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err.Error() }))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rjs, _ := jetstream.New(rd)

	// Reads work.
	msgs, err := eventstore.New(rjs, "").ReadAll(ctx, "tenancy.evt.>", 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("the reader cannot read the log: %d %v", len(msgs), err)
	}
	st, err := rjs.Stream(ctx, eventstore.DefaultStream)
	if err != nil {
		t.Fatalf("the reader cannot see the stream: %v", err)
	}

	// Writes do not.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 2*time.Second) }
	denied := map[string]func(context.Context) error{
		"append an event": func(c context.Context) error {
			_, err := rjs.Publish(c, "tenancy.evt.t.tenant.a", []byte(`{"forged":1}`))
			return err
		},
		"append a claim": func(c context.Context) error {
			_, err := rjs.Publish(c, "tenancy.claim.slug.x", []byte(`{}`))
			return err
		},
		"purge":             func(c context.Context) error { return st.Purge(c) },
		"delete a message":  func(c context.Context) error { return st.DeleteMsg(c, 1) },
		"delete the stream": func(c context.Context) error { return rjs.DeleteStream(c, eventstore.DefaultStream) },
		"update the stream": func(c context.Context) error {
			_, err := rjs.UpdateStream(c, jetstream.StreamConfig{Name: eventstore.DefaultStream, Subjects: []string{"x.>"}})
			return err
		},
		"create a consumer": func(c context.Context) error {
			_, err := rjs.CreateOrUpdateConsumer(c, eventstore.DefaultStream, jetstream.ConsumerConfig{Durable: "projection-tenants"})
			return err
		},
		"open a KV bucket": func(c context.Context) error { _, err := rjs.KeyValue(c, "TENANCY_TEST"); return err },
	}
	// A refused request gets no answer: each waits out its timeout, so
	// they run at once.
	var wg sync.WaitGroup
	for name, op := range denied {
		wg.Go(func() {
			c, cancel := short()
			defer cancel()
			if err := op(c); err == nil {
				t.Errorf("the reader could %s", name)
			}
		})
	}
	wg.Wait()
	// A raw KV write (no API call to refuse) is dropped.
	if err := rd.Publish("$KV.TENANCY_TEST.k", []byte("reader")); err != nil {
		t.Fatal(err)
	}
	if err := rd.Flush(); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "k"); err != nil || string(e.Value()) != "service" {
		t.Fatalf("the KV value after the reader's write: %v %v", e, err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != 1 || info.State.LastSeq != 1 {
		t.Fatalf("the stream after the reader's attempts: %+v %v", info.State, err)
	}
	// The services' inboxes are not the reader's to listen on.
	if _, err := rd.SubscribeSync("_INBOX.>"); err != nil {
		t.Fatal(err)
	}
	select {
	case v := <-violations:
		for !strings.Contains(v, `Subscription to "_INBOX.>"`) {
			select {
			case v = <-violations:
			case <-time.After(5 * time.Second):
				t.Fatalf("no subscription violation; last error %q", v)
			}
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the reader subscribed to the services' inboxes")
	}
	if errors.Is(rd.LastError(), nats.ErrConnectionClosed) {
		t.Fatal("the reader's connection closed")
	}
}
