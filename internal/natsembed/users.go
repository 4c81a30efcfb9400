package natsembed

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
)

// The NATS users of a Tenancy deployment. Only ServiceUser may write: append
// to the event log (tenancy.evt.>, tenancy.claim.>), manage streams and
// consumers, write Tenancy's KV buckets. ReaderUser reads the event log and
// nothing else. deploy/kubernetes/base/nats-auth.conf states the same for
// nats-server processes (docker compose, Kubernetes, the cluster system
// test); a test keeps the two equal.
const (
	ServiceUser = "tenancy"
	ReaderUser  = "reader"
	// ReaderInboxPrefix is the inbox prefix a reader's client must use
	// (nats.CustomInboxPrefix; natscli --inbox-prefix): readers may not
	// subscribe to the services' inboxes, where replies to their requests
	// (KV records among them) travel.
	ReaderInboxPrefix = "_INBOX_reader"
)

// ReaderPermissions are the reader's: stream information and reads of the
// TENANCY stream by sequence or subject (direct gets, as `tenancy verify`
// and `nats stream get` do), and the live events; no publish to the log, no
// consumer or stream management, no KV.
func ReaderPermissions() *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.NAMES",
			"$JS.API.STREAM.LIST",
			"$JS.API.STREAM.INFO.TENANCY",
			"$JS.API.STREAM.MSG.GET.TENANCY",
			"$JS.API.DIRECT.GET.TENANCY",
			"$JS.API.DIRECT.GET.TENANCY.>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			"tenancy.evt.>",
			ReaderInboxPrefix + ".>",
		}},
	}
}

// Users are the passwords of the two users; a server started with Users
// refuses every other connection.
type Users struct {
	Service string `json:"tenancy"`
	Reader  string `json:"reader"`
}

func (u *Users) serverUsers() []*server.User {
	return []*server.User{
		{Username: ServiceUser, Password: u.Service},
		{Username: ReaderUser, Password: u.Reader, Permissions: ReaderPermissions()},
	}
}

// LoadOrCreateUsers reads the users' passwords from path (JSON, mode 0600),
// creating the file with random passwords the first time.
func LoadOrCreateUsers(path string) (*Users, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		u := &Users{Service: password(), Reader: password()}
		b, _ = json.MarshalIndent(u, "", "  ")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("write the NATS users file: %w", err)
		}
		return u, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseUsers(path, b)
}

// LoadUsers reads an existing users file.
func LoadUsers(path string) (*Users, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the NATS users file: %w", err)
	}
	return ParseUsers(path, b)
}

// ParseUsers decodes a users file's contents (path names it in errors).
func ParseUsers(path string, b []byte) (*Users, error) {
	var u Users
	if err := json.Unmarshal(b, &u); err != nil || u.Service == "" || u.Reader == "" {
		return nil, fmt.Errorf("%s is not a NATS users file (want {\"tenancy\": password, \"reader\": password}); remove it to have new passwords made", path)
	}
	return &u, nil
}

// password returns 32 random bytes, base64url.
func password() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
