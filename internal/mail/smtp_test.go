package mail_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/tenancyhq/tenancy/internal/mail"
)

// relay is an SMTP server (go-smtp's, as a real relay answers) that
// requires TLS and AUTH PLAIN before it takes mail, and keeps what it got.
type relay struct {
	addr   string
	client *tls.Config // trusts the relay's certificate
	mu     sync.Mutex
	got    []string // "user|from|to|data"
	// rcpt, when set, answers RCPT TO.
	rcpt func(to string) error
}

type session struct {
	r          *relay
	user, from string
	to         []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "tenancy" || pass != "s3cret" {
			return smtp.ErrAuthFailed // 535 5.7.8, as relays answer
		}
		s.user = user
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.r.rcpt != nil {
		if err := s.r.rcpt(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.got = append(s.r.got, s.user+"|"+s.from+"|"+strings.Join(s.to, ",")+"|"+string(b))
	return nil
}
func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func (r *relay) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// startRelay runs a relay on a random port; withTLS false makes one that
// offers no STARTTLS at all.
func startRelay(t *testing.T, withTLS bool) *relay {
	t.Helper()
	r := &relay{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{r: r}, nil }))
	srv.Domain = "relay.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	if withTLS {
		cert, pool := selfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		r.client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	} else {
		srv.AllowInsecureAuth = true
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = l.Addr().String()
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return r
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay.test"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func sender(t *testing.T, r *relay, url string) *mail.SMTP {
	t.Helper()
	s, err := mail.NewSMTP(strings.ReplaceAll(url, "ADDR", r.addr), "Tenancy <no-reply@tenancy.example>")
	if err != nil {
		t.Fatal(err)
	}
	s.TLS, s.Timeout = r.client, 5*time.Second
	return s
}

// TestSMTP: mail goes to the relay over STARTTLS with the credentials of
// the URL; a relay that offers no STARTTLS gets nothing (not even the
// password); a 5xx refusal is permanent, a 4xx one is not.
func TestSMTP(t *testing.T) {
	ctx := context.Background()
	r := startRelay(t, true)
	if err := sender(t, r, "smtp://tenancy:s3cret@ADDR").Send(ctx, message("m1")); err != nil {
		t.Fatal(err)
	}
	got := r.received()
	if len(got) != 1 || !strings.HasPrefix(got[0], "tenancy|no-reply@tenancy.example|ann@example.com|") || !strings.Contains(got[0], "Message-ID: <m1@tenancy.example>") {
		t.Fatalf("relay got %q", got)
	}
	if err := sender(t, r, "smtp://tenancy:wrong@ADDR").Send(ctx, message("m2")); err == nil || !mail.Permanent(err) {
		t.Fatalf("bad credentials: %v (permanent %v)", err, mail.Permanent(err))
	}

	r.rcpt = func(to string) error {
		if strings.HasPrefix(to, "gone") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	gone, later := message("m3"), message("m4")
	gone.To = "gone@example.com"
	if err := sender(t, r, "smtp://tenancy:s3cret@ADDR").Send(ctx, gone); !mail.Permanent(err) {
		t.Fatalf("a 550: %v, want permanent", err)
	}
	if err := sender(t, r, "smtp://tenancy:s3cret@ADDR").Send(ctx, later); err == nil || mail.Permanent(err) {
		t.Fatalf("a 451: %v, want a retryable failure", err)
	}

	plain := startRelay(t, false)
	if err := sender(t, plain, "smtp://tenancy:s3cret@ADDR").Send(ctx, message("m5")); err == nil || mail.Permanent(err) || len(plain.received()) != 0 {
		t.Fatalf("a relay without STARTTLS: %v, got %q", err, plain.received())
	}
}

// TestSMTPURL: what a relay URL may say.
func TestSMTPURL(t *testing.T) {
	for url, ok := range map[string]bool{
		"smtp://relay.example":                 true,
		"smtps://u:p@relay.example":            true,
		"smtp://relay.example:25?tls=none":     true,
		"smtp://u:p@relay.example:25?tls=none": false, // a password in the clear
		"http://relay.example":                 false,
		"smtp://":                              false,
		"smtp://relay.example?tls=sometimes":   false,
		"smtp://u:p%zz@relay.example":          false,
	} {
		_, err := mail.NewSMTP(url, "no-reply@tenancy.example")
		if (err == nil) != ok {
			t.Errorf("%s: %v", url, err)
		}
		if err != nil && strings.Contains(err.Error(), "p%zz") {
			t.Errorf("%s: the error echoes the password: %v", url, err)
		}
	}
	if _, err := mail.NewSMTP("smtp://relay.example", "not an address"); err == nil {
		t.Error("a From that is no address was accepted")
	}
}
