package subscriber

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Request headers of a delivery.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
	// HeaderSequence is the event's sequence in Tenancy's log: increasing
	// per endpoint, so a receiver can tell a gap or an old event.
	HeaderSequence = "tenancy-sequence"
	// HeaderAttempt counts delivery attempts of this event, from 1.
	HeaderAttempt = "tenancy-attempt"
	// HeaderReplay is "true" on deliveries an operator replayed.
	HeaderReplay = "tenancy-replay"
	// ContentType is the body's media type: a CloudEvent in structured mode.
	ContentType = "application/cloudevents+json"
)

// DefaultTolerance is how far webhook-timestamp may be from the receiver's
// clock unless Config.Tolerance says otherwise: the Standard Webhooks
// recommendation, which bounds how long a captured request can be replayed.
const DefaultTolerance = 5 * time.Minute

// DefaultMaxBody is the largest body accepted unless Config.MaxBody says
// otherwise. The webhooker sends at most WEBHOOK_MAX_BODY (256 KiB by
// default); this leaves room for a raised limit without letting a stray
// client exhaust memory.
const DefaultMaxBody = 4 << 20

// secretPrefix marks a Standard Webhooks secret; the rest is the base64 HMAC
// key.
const secretPrefix = "whsec_"

// Config configures a Verifier.
type Config struct {
	// Secrets are the subscription's signing secrets as the API returns them
	// (whsec_<base64>; the prefix is optional). Give both the old and the
	// new one while a rotation is in progress: a delivery is authentic when
	// it is signed with any of them.
	Secrets []string
	// InsecureSkipSignature accepts deliveries without checking
	// webhook-id, webhook-timestamp and webhook-signature. It exists for
	// demos wired before the secret is known; anyone who can reach the
	// receiver can then forge deliveries.
	InsecureSkipSignature bool
	// Tolerance bounds the distance between webhook-timestamp and Now, in
	// both directions; zero means DefaultTolerance.
	Tolerance time.Duration
	// MaxBody is the largest body accepted, in bytes; zero means
	// DefaultMaxBody.
	MaxBody int64
	// Now is the receiver's clock; nil means time.Now. Tests inject one.
	Now func() time.Time
	// EventKeys, when set, makes every delivered event's Ed25519 signature
	// checked against Tenancy's published event keys.
	EventKeys KeySource
}

// Verifier checks deliveries. It is safe for concurrent use.
type Verifier struct {
	keys      [][]byte
	insecure  bool
	tolerance time.Duration
	maxBody   int64
	now       func() time.Time
	eventKeys KeySource
}

// NewVerifier returns a verifier for c. It fails when a secret is not
// well-formed, or when there is no secret and InsecureSkipSignature is not
// set, since a verifier that checks nothing must be asked for explicitly.
func NewVerifier(c Config) (*Verifier, error) {
	v := &Verifier{
		insecure: c.InsecureSkipSignature, tolerance: c.Tolerance, maxBody: c.MaxBody,
		now: c.Now, eventKeys: c.EventKeys,
	}
	for i, s := range c.Secrets {
		k, err := ParseSecret(s)
		if err != nil {
			return nil, fmt.Errorf("secret %d: %w", i+1, err)
		}
		v.keys = append(v.keys, k)
	}
	switch {
	case len(v.keys) == 0 && !v.insecure:
		return nil, errors.New("no secret: set Config.Secrets (or InsecureSkipSignature to accept unsigned deliveries)")
	case len(v.keys) > 0 && v.insecure:
		return nil, errors.New("secrets given with InsecureSkipSignature: choose one")
	case v.tolerance < 0 || v.maxBody < 0:
		return nil, errors.New("negative Tolerance or MaxBody")
	}
	if v.tolerance == 0 {
		v.tolerance = DefaultTolerance
	}
	if v.maxBody == 0 {
		v.maxBody = DefaultMaxBody
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// ParseSecret decodes a whsec_<base64> secret into its HMAC key. The error
// never quotes the secret, since configuration errors end up in logs.
func ParseSecret(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), secretPrefix))
	if err != nil || len(k) == 0 {
		return nil, errors.New("not whsec_ followed by base64")
	}
	return k, nil
}

// Delivery is one verified delivery.
type Delivery struct {
	// Event is the delivered CloudEvent.
	Event event.Event
	// Extensions are Tenancy's attributes of Event.
	Extensions
	// ID is webhook-id, which is Event.ID(): the same on every retry and
	// replay, so it is the key to deduplicate on.
	ID string
	// Timestamp is webhook-timestamp: when this attempt was signed (zero
	// under InsecureSkipSignature, which does not read it).
	Timestamp time.Time
	// Sequence is tenancy-sequence, the event's position in Tenancy's log.
	Sequence uint64
	// Attempt is tenancy-attempt, from 1.
	Attempt int
	// Replay is true when an operator replayed the event
	// (tenancy-replay: true); the receiver may have seen it before.
	Replay bool
	// SignatureVerified is false only under InsecureSkipSignature.
	SignatureVerified bool
	// EventVerified is true when the event's Ed25519 signature was checked
	// against the event keys: never for a truncated event, whose data is
	// not in the delivery.
	EventVerified bool
	// Body is the request body as received.
	Body []byte
}

// VerifyRequest reads and verifies a delivery. It reads at most MaxBody
// bytes of r.Body and does not close it (the server does).
func (v *Verifier) VerifyRequest(r *http.Request) (*Delivery, error) {
	if !v.insecure {
		// Checked before the body is read, so that a request that is not
		// a current delivery costs the receiver no more than its headers.
		if _, err := v.checkTimestamp(r.Header); err != nil {
			return nil, err
		}
	}
	if r.ContentLength > v.maxBody {
		return nil, ErrTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, v.maxBody+1))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, ErrTooLarge
		}
		return nil, fmt.Errorf("%w: reading the body: %v", ErrMalformed, err)
	}
	return v.Verify(r.Context(), r.Header, body)
}

// Verify verifies a delivery given its headers and body: the body size, the
// Standard Webhooks timestamp and signature, the tenancy-* headers, then
// the event (and its Ed25519 signature when Config.EventKeys is set).
func (v *Verifier) Verify(ctx context.Context, h http.Header, body []byte) (*Delivery, error) {
	if int64(len(body)) > v.maxBody {
		return nil, ErrTooLarge
	}
	d := &Delivery{ID: h.Get(HeaderID), Body: body}
	if !v.insecure {
		ts, err := v.checkTimestamp(h)
		if err != nil {
			return nil, err
		}
		if err := v.checkSignature(h, body); err != nil {
			return nil, err
		}
		d.Timestamp, d.SignatureVerified = ts, true
	}
	if err := readTenancyHeaders(h, d); err != nil {
		return nil, err
	}
	ev, x, verified, err := v.event(ctx, body, true)
	if err != nil {
		return nil, err
	}
	d.Event, d.Extensions, d.EventVerified = ev, x, verified
	switch {
	case d.ID == "":
		d.ID = ev.ID()
	case d.ID != ev.ID():
		// The webhooker sends the event id as webhook-id; anything else
		// would make receivers deduplicate on the wrong key.
		return nil, fmt.Errorf("%w: webhook-id %q is not the event id %q", ErrMalformed, d.ID, ev.ID())
	}
	return d, nil
}

// checkTimestamp checks that the Standard Webhooks headers are present and
// the timestamp is within the tolerance.
func (v *Verifier) checkTimestamp(h http.Header) (time.Time, error) {
	if h.Get(HeaderID) == "" || h.Get(HeaderTimestamp) == "" || h.Get(HeaderSignature) == "" {
		return time.Time{}, ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return time.Time{}, ErrBadTimestamp
	}
	ts := time.Unix(sec, 0)
	// Both directions: a timestamp far in the future would otherwise stay
	// replayable for as long as it is ahead.
	if d := v.now().Sub(ts); d > v.tolerance || d < -v.tolerance {
		return time.Time{}, ErrStale
	}
	return ts, nil
}

// checkSignature reports whether any "v1,<base64>" in the space-separated
// webhook-signature is the HMAC-SHA256 of "id.timestamp.body" under any
// key. Several keys and several signatures both come from rotations:
// during the grace period Tenancy signs with the old and the new secret,
// and the receiver may hold either or both.
func (v *Verifier) checkSignature(h http.Header, body []byte) error {
	var given [][]byte
	for _, s := range strings.Fields(h.Get(HeaderSignature)) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			// Other schemes (v1a is asymmetric) are not ours to check.
			continue
		}
		if b, err := base64.StdEncoding.DecodeString(sig); err == nil {
			given = append(given, b)
		}
	}
	for _, k := range v.keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(h.Get(HeaderID) + "." + h.Get(HeaderTimestamp) + "."))
		m.Write(body)
		want := m.Sum(nil)
		for _, g := range given {
			// Constant time, so the comparison does not tell an attacker
			// how many leading bytes of a forged signature were right.
			if hmac.Equal(want, g) {
				return nil
			}
		}
	}
	return ErrBadSignature
}

// readTenancyHeaders fills d from the tenancy-* headers. Absent headers
// leave zero values (a request not sent by the webhooker, accepted under
// InsecureSkipSignature); present ones must be well-formed, since a
// receiver relies on the sequence for ordering.
func readTenancyHeaders(h http.Header, d *Delivery) error {
	var err error
	if s := h.Get(HeaderSequence); s != "" {
		if d.Sequence, err = strconv.ParseUint(s, 10, 64); err != nil {
			return fmt.Errorf("%w: %s %q is not a sequence number", ErrMalformed, HeaderSequence, s)
		}
	}
	if s := h.Get(HeaderAttempt); s != "" {
		if d.Attempt, err = strconv.Atoi(s); err != nil || d.Attempt < 1 {
			return fmt.Errorf("%w: %s %q is not an attempt number", ErrMalformed, HeaderAttempt, s)
		}
	}
	if s := h.Get(HeaderReplay); s != "" {
		if d.Replay, err = strconv.ParseBool(s); err != nil {
			return fmt.Errorf("%w: %s %q is not a boolean", ErrMalformed, HeaderReplay, s)
		}
	}
	return nil
}
