package mail_test

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/tenancyhq/tenancy/internal/mail"
)

func message(id string) mail.Message {
	return mail.Message{ID: id, Kind: "test", To: "ann@example.com", Subject: "Grüße from Tenancy",
		Text: "Hello Ann,\nyour code is 123456.\n", CreatedAt: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}
}

// TestCompose: a message reads back, through the standard library's
// parsers, as what was composed: headers (the subject encoded), the text
// part and the HTML alternative, and a Message-ID made of its id.
func TestCompose(t *testing.T) {
	m := message("m1")
	m.HTML = "<p>Hello Ann,</p><p>your code is <b>123456</b>.</p>"
	raw, err := mail.Compose("Tenancy <no-reply@tenancy.example>", m, "tenancy.example")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := new(mime.WordDecoder).DecodeHeader(parsed.Header.Get("Subject"))
	if subject != m.Subject || parsed.Header.Get("Message-ID") != "<m1@tenancy.example>" || parsed.Header.Get("To") != m.To {
		t.Fatalf("headers: %v (subject %q)", parsed.Header, subject)
	}
	typ, params, _ := mime.ParseMediaType(parsed.Header.Get("Content-Type"))
	if typ != "multipart/alternative" {
		t.Fatalf("content type %s", typ)
	}
	r := multipart.NewReader(parsed.Body, params["boundary"])
	var parts []string
	for {
		p, err := r.NextPart() // decodes quoted-printable
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, p.Header.Get("Content-Type")+"|"+strings.ReplaceAll(string(b), "\r\n", "\n"))
	}
	if len(parts) != 2 || parts[0] != "text/plain; charset=utf-8|"+m.Text || parts[1] != "text/html; charset=utf-8|"+m.HTML {
		t.Fatalf("parts %q", parts)
	}
}

// TestValidate: what would break headers or delivery is refused.
func TestValidate(t *testing.T) {
	for name, change := range map[string]func(*mail.Message){
		"two recipients":          func(m *mail.Message) { m.To = "ann@example.com, bob@example.com" },
		"a display name":          func(m *mail.Message) { m.To = "Ann <ann@example.com>" },
		"a header in the to":      func(m *mail.Message) { m.To = "ann@example.com\r\nBcc: eve@example.com" },
		"a header in the subject": func(m *mail.Message) { m.Subject = "hi\r\nBcc: eve@example.com" },
		"no text":                 func(m *mail.Message) { m.Text = "" },
		"an id with an @":         func(m *mail.Message) { m.ID = "a@b" },
		"no kind":                 func(m *mail.Message) { m.Kind = "" },
		"invalid UTF-8":           func(m *mail.Message) { m.Text = "\xff" },
	} {
		m := message("m1")
		change(&m)
		if err := m.Validate(); !errors.Is(err, mail.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := message("m1").Validate(); err != nil {
		t.Fatal(err)
	}
}
