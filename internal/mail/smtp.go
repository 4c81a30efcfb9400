package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Sender delivers one composed message.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Permanent reports whether err is a refusal that sending again cannot
// change: the relay's 5xx answer (a recipient it will not take, a message
// it rejects). Everything else (4xx, timeouts, refused connections) is
// worth retrying.
func Permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500 || errors.Is(err, ErrInvalid)
}

// SMTP sends through a relay: smtp://[user:password@]host[:port] with
// STARTTLS required (port 587 unless given), smtps:// with TLS from the
// start (port 465), or smtp://...?tls=none for a relay on a trusted local
// network only. Credentials are sent with AUTH PLAIN, only ever over TLS.
type SMTP struct {
	addr, host string
	mode       string // "starttls", "tls" or "none"
	auth       *url.Userinfo
	from       string
	// domain is the right-hand side of Message-IDs: the sender's.
	domain string
	// TLS, when set, replaces the default TLS settings (tests trust their
	// own certificate with it).
	TLS *tls.Config
	// Timeout bounds one delivery, connection included.
	Timeout time.Duration
}

// NewSMTP parses a relay URL (see SMTP) and the From address.
func NewSMTP(rawURL, from string) (*SMTP, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("TENANCY_SMTP_URL: %v", redactURL(err))
	}
	s := &SMTP{host: u.Hostname(), auth: u.User, from: from, Timeout: 30 * time.Second}
	port := u.Port()
	switch u.Scheme {
	case "smtp":
		s.mode = "starttls"
		if port == "" {
			port = "587"
		}
		switch u.Query().Get("tls") {
		case "", "starttls":
		case "none":
			s.mode = "none"
		default:
			return nil, errors.New("TENANCY_SMTP_URL: tls must be starttls (the default) or none")
		}
	case "smtps":
		s.mode = "tls"
		if port == "" {
			port = "465"
		}
	default:
		return nil, errors.New("TENANCY_SMTP_URL: the scheme must be smtp or smtps")
	}
	if s.host == "" {
		return nil, errors.New("TENANCY_SMTP_URL: a host is required")
	}
	if s.mode == "none" && s.auth != nil {
		return nil, errors.New("TENANCY_SMTP_URL: credentials are never sent without TLS; drop tls=none or the user")
	}
	a, err := parseFrom(from)
	if err != nil {
		return nil, err
	}
	s.domain = a[strings.LastIndex(a, "@")+1:]
	s.addr = net.JoinHostPort(s.host, port)
	return s, nil
}

// redactURL keeps a parse error from echoing a password.
func redactURL(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return "not a URL"
}

// Send delivers m to the relay.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	msg, err := Compose(s.from, m, s.domain)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	c, err := s.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	// The connection's deadline is the context's: a relay that hangs
	// mid-conversation does not hold the mailer.
	if d, ok := ctx.Deadline(); ok {
		c.CommandTimeout, c.SubmissionTimeout = time.Until(d), time.Until(d)
	}
	if s.auth != nil {
		pw, _ := s.auth.Password()
		if err := c.Auth(sasl.NewPlainClient("", s.auth.Username(), pw)); err != nil {
			return fmt.Errorf("authenticating with the relay: %w", err)
		}
	}
	from, _ := parseFrom(s.from)
	if err := c.SendMail(from, []string{m.To}, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func (s *SMTP) dial(ctx context.Context) (*smtp.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
	if s.TLS != nil {
		cfg = s.TLS.Clone()
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	switch s.mode {
	case "tls":
		return smtp.NewClient(tls.Client(conn, cfg)), nil
	case "starttls":
		c, err := smtp.NewClientStartTLS(conn, cfg)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("STARTTLS with the relay (required): %w", err)
		}
		return c, nil
	}
	return smtp.NewClient(conn), nil
}

// parseFrom returns the address of a From header value.
func parseFrom(from string) (string, error) {
	a, err := mailAddress(from)
	if err != nil {
		return "", fmt.Errorf("TENANCY_MAIL_FROM: %w", err)
	}
	return a, nil
}
