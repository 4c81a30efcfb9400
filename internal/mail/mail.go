// Package mail is how Tenancy sends its own email (invitations,
// registration codes, approvals): a durable outbox on JetStream that the
// API fills and the provisioner drains through an SMTP relay, or, in dev,
// into a sink in the data directory that GET /dev/mail lists.
//
// A message is queued once (its id is the stream's deduplication id), kept
// sealed under its tenant's data key (a recipient is personal data, and an
// invitation carries a one-time token), and marked sent by id before its
// queue entry is acknowledged: a mailer that crashes before the mark sends
// it again, with the same Message-ID header, so that mail systems can tell
// the two apart; one that crashes after it does not.
package mail

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	netmail "net/mail"
	"net/textproto"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is one email.
type Message struct {
	// ID identifies the message in the outbox (enqueuing the same id twice
	// sends it once) and is its Message-ID.
	ID string `json:"id"`
	// TenantID is the tenant the message is about, whose data key seals
	// it; empty for the platform's own mail.
	TenantID string `json:"tenant_id,omitempty"`
	// Kind names what the message is (invitation, test, ...), for logs
	// and metrics: never its content.
	Kind    string `json:"kind"`
	To      string `json:"to"`
	Subject string `json:"subject"`
	// Text is the plain-text part, always present; HTML is optional.
	Text      string    `json:"text"`
	HTML      string    `json:"html,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ErrInvalid reports a message that cannot be sent as it is.
var ErrInvalid = errors.New("invalid message")

// Validate checks what would otherwise break the message's headers or its
// delivery: one plain address, a one-line subject, a text part.
func (m Message) Validate() error {
	switch {
	case m.ID == "" || strings.ContainsAny(m.ID, "<>@ \r\n"):
		return fmt.Errorf("%w: the id must be a non-empty token without <, >, @ or spaces", ErrInvalid)
	case m.Kind == "":
		return fmt.Errorf("%w: the kind is required", ErrInvalid)
	case strings.ContainsAny(m.Subject, "\r\n") || !utf8.ValidString(m.Subject) || m.Subject == "":
		return fmt.Errorf("%w: the subject must be one line of UTF-8", ErrInvalid)
	case m.Text == "" || !utf8.ValidString(m.Text) || !utf8.ValidString(m.HTML):
		return fmt.Errorf("%w: the text part is required, and both parts must be UTF-8", ErrInvalid)
	}
	return CheckRecipient(m.To)
}

// CheckRecipient accepts one plain address (ann@example.com): no display
// name, no list, nothing that could add a header.
func CheckRecipient(to string) error {
	a, err := netmail.ParseAddress(to)
	if err != nil || a.Name != "" || a.Address != to {
		return fmt.Errorf("%w: the recipient must be one plain address (like ann@example.com)", ErrInvalid)
	}
	return nil
}

// Compose renders m as an RFC 5322 message from from: a text part, and an
// HTML alternative when m has one, quoted-printable, with a Message-ID
// derived from m.ID so that a message sent twice reads as one.
func Compose(from string, m Message, domain string) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", from)
	header("To", m.To)
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", m.CreatedAt.UTC().Format(time.RFC1123Z))
	header("Message-ID", "<"+m.ID+"@"+domain+">")
	header("MIME-Version", "1.0")
	if m.HTML == "" {
		header("Content-Type", "text/plain; charset=utf-8")
		header("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, m.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	w := multipart.NewWriter(&b)
	header("Content-Type", `multipart/alternative; boundary="`+w.Boundary()+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ typ, body string }{{"text/plain", m.Text}, {"text/html", m.HTML}} {
		p, err := w.CreatePart(textproto.MIMEHeader{"Content-Type": {part.typ + "; charset=utf-8"}, "Content-Transfer-Encoding": {"quoted-printable"}})
		if err != nil {
			return nil, err
		}
		if err := writeQP(p, part.body); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeQP(w interface{ Write([]byte) (int, error) }, s string) error {
	q := quotedprintable.NewWriter(w)
	if _, err := q.Write([]byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))); err != nil {
		return err
	}
	return q.Close()
}

// mailAddress returns the address of one RFC 5322 address ("Name <a@b>"
// or "a@b").
func mailAddress(s string) (string, error) {
	a, err := netmail.ParseAddress(s)
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return "", errors.New("not one email address (like Tenancy <no-reply@example.com>)")
	}
	return a.Address, nil
}
