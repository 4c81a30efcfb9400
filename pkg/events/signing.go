package events

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// Canonical returns the RFC 8785 (JCS) canonical form of a JSON text.
func Canonical(raw []byte) ([]byte, error) {
	c, err := jcs.Transform(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: canonicalize: %v", ErrMalformed, err)
	}
	return c, nil
}

// Hash is the SHA-256 of an event's canonical bytes, as used in prevhash.
type Hash [sha256.Size]byte

// String returns the lowercase hex form used in the prevhash attribute.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash (no previous event).
func (h Hash) IsZero() bool { return h == Hash{} }

// HashCanonical hashes bytes that are already canonical.
func HashCanonical(canonical []byte) Hash { return sha256.Sum256(canonical) }

// Signer signs envelopes with one Ed25519 key.
type Signer struct {
	kid  string
	priv ed25519.PrivateKey
}

// NewSigner returns a signer for an Ed25519 private key. Its key id is the
// RFC 7638 JWK thumbprint of the public key, so it is stable and derivable by
// anyone holding the public key.
func NewSigner(priv ed25519.PrivateKey) (*Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key: want %d bytes, got %d", ed25519.PrivateKeySize, len(priv))
	}
	pub := priv.Public().(ed25519.PublicKey)
	return &Signer{kid: KeyID(pub), priv: priv}, nil
}

// KeyID returns the signer's key id.
func (s *Signer) KeyID() string { return s.kid }

// PublicKey returns the signer's public key.
func (s *Signer) PublicKey() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Sign sets e's sigkeyid and signature and returns the canonical bytes of
// the signed event (what is stored) and their hash (the next event's
// prevhash).
func (s *Signer) Sign(e *Envelope) ([]byte, Hash, error) {
	e.SigKeyID = s.kid
	e.Signature = ""
	e.Time = e.Time.UTC()
	data, err := Canonical(e.Data)
	if err != nil {
		return nil, Hash{}, fmt.Errorf("event data: %w", err)
	}
	e.Data = data
	unsigned, err := appendCanonical(make([]byte, 0, 512+len(data)), e)
	if err != nil {
		return nil, Hash{}, err
	}
	e.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.priv, unsigned))
	signed, err := appendCanonical(make([]byte, 0, len(unsigned)+110), e)
	if err != nil {
		return nil, Hash{}, err
	}
	return signed, HashCanonical(signed), nil
}

// appendCanonical appends the RFC 8785 form of e, whose Data is already
// canonical. The envelope's members are known, so they are written in
// their sorted order directly rather than marshalled and re-parsed; a test
// checks the result equals the generic canonicalization byte for byte.
func appendCanonical(b []byte, e *Envelope) ([]byte, error) {
	var err error
	first := true
	name := func(n string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, n...)
		b = append(b, '"', ':')
	}
	str := func(n, v string, omitEmpty bool) {
		if err != nil || (omitEmpty && v == "") {
			return
		}
		name(n)
		b, err = appendJCSString(b, v)
	}
	b = append(b, '{')
	// Members in the order RFC 8785 sorts them (all names are ASCII).
	str("actor", e.Actor, false)
	name("aggversion")
	b = strconv.AppendInt(b, e.AggVersion, 10)
	str("causationid", e.CausationID, true)
	str("correlationid", e.CorrelationID, true)
	name("data")
	b = append(b, e.Data...)
	str("datacontenttype", e.DataContentType, false)
	str("id", e.ID, false)
	str("prevhash", e.PrevHash, true)
	str("sigkeyid", e.SigKeyID, false)
	str("signature", e.Signature, true)
	str("source", e.Source, false)
	str("specversion", e.SpecVersion, false)
	str("subject", e.Subject, false)
	str("tenantid", e.TenantID, false)
	str("time", e.Time.Format(time.RFC3339Nano), false)
	str("traceparent", e.TraceParent, true)
	str("type", e.Type, false)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendJCSString appends s as a JSON string escaped as RFC 8785 requires
// (ECMAScript JSON.stringify): only quote, backslash and control characters
// are escaped.
func appendJCSString(b []byte, s string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: string is not valid UTF-8", ErrMalformed)
	}
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b = append(b, '\\', '"')
		case c == '\\':
			b = append(b, '\\', '\\')
		case c >= 0x20:
			b = append(b, c)
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return append(b, '"'), nil
}

// KeyID returns the RFC 7638 JWK thumbprint of an Ed25519 public key.
func KeyID(pub ed25519.PublicKey) string {
	// Members in lexicographic order, no whitespace, as RFC 7638 requires.
	thumb := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(thumb))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// PublicKey is one verification key with its life cycle.
type PublicKey struct {
	ID        string
	Key       ed25519.PublicKey
	CreatedAt time.Time
	// RetiredAt is when the key stopped signing new events; zero while active.
	// Retired keys still verify the events they signed.
	RetiredAt time.Time
	// RetiredSeq is the stream sequence of the key's retirement event (0
	// while active): the key verifies only events stored before it.
	RetiredSeq uint64
}

// KeySet holds the public keys events are verified with. It is safe for
// concurrent use.
type KeySet struct {
	mu   sync.RWMutex
	keys map[string]PublicKey
}

// NewKeySet returns a key set holding keys.
func NewKeySet(keys ...PublicKey) *KeySet {
	ks := &KeySet{keys: map[string]PublicKey{}}
	for _, k := range keys {
		ks.Add(k)
	}
	return ks
}

// Add adds or replaces a key.
func (ks *KeySet) Add(k PublicKey) {
	if k.ID == "" {
		k.ID = KeyID(k.Key)
	}
	ks.mu.Lock()
	ks.keys[k.ID] = k
	ks.mu.Unlock()
}

// Get returns the key with id kid.
func (ks *KeySet) Get(kid string) (PublicKey, bool) {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	k, ok := ks.keys[kid]
	return k, ok
}

// Keys returns every key, oldest first.
func (ks *KeySet) Keys() []PublicKey {
	ks.mu.RLock()
	out := make([]PublicKey, 0, len(ks.keys))
	for _, k := range ks.keys {
		out = append(out, k)
	}
	ks.mu.RUnlock()
	slices.SortFunc(out, func(a, b PublicKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// Verification failures. Each VerifyError wraps one of these.
var (
	ErrUnknownKey       = errors.New("signed by an unknown key")
	ErrBadSignature     = errors.New("signature does not verify")
	ErrNotCanonical     = errors.New("stored bytes are not canonical")
	ErrBrokenChain      = errors.New("hash chain broken")
	ErrVersionGap       = errors.New("aggregate version out of order")
	ErrSubjectMismatch  = errors.New("event does not belong to its subject")
	ErrDuplicateEventID = errors.New("event id seen twice")
	ErrRetiredKey       = errors.New("signed by a key after its retirement")
	// ErrReplayed is an event whose version the aggregate's chain already
	// has: a genuine event published a second time, or one forged in its
	// place.
	ErrReplayed = errors.New("aggregate version already in the chain")
)

// Verify checks one stored event: well-formed, canonical, and signed by a
// key in the set. It returns the parsed envelope and its hash.
//
// The envelope's members are known, so canonical form is checked by
// writing the parsed envelope back (appendCanonical) and comparing: any
// other spelling of a member, an extra or repeated member, or bytes around
// the object make the stored bytes differ. The data member is compared
// verbatim: the signature covers it byte for byte, and the signer wrote it
// canonical. This is the readers' hot path: one JSON parse, two appends,
// one Ed25519 verification and one SHA-256, no generic canonicalization.
func (ks *KeySet) Verify(raw []byte) (*Envelope, Hash, error) {
	e, err := Parse(raw)
	if err != nil {
		return nil, Hash{}, err
	}
	buf := make([]byte, 0, 2*len(raw)+16)
	signed, err := appendCanonical(buf, e)
	if err != nil {
		return e, Hash{}, err
	}
	if string(signed) != string(raw) {
		return e, Hash{}, ErrNotCanonical
	}
	if err := ks.verifySignature(e, signed[len(signed):]); err != nil {
		return e, Hash{}, err
	}
	return e, HashCanonical(raw), nil
}

// VerifyAt is Verify for an event stored at stream sequence seq: a key
// retired at or before seq signed it too late, and it is refused.
func (ks *KeySet) VerifyAt(seq uint64, raw []byte) (*Envelope, Hash, error) {
	e, h, err := ks.Verify(raw)
	if err != nil {
		return e, h, err
	}
	if k, _ := ks.Get(e.SigKeyID); k.RetiredSeq != 0 && seq >= k.RetiredSeq {
		return e, Hash{}, fmt.Errorf("%w: key %s retired at seq %d", ErrRetiredKey, k.ID, k.RetiredSeq)
	}
	return e, h, nil
}

// verifySignature checks e's signature over its canonical form without
// the signature member, written into buf's spare capacity.
func (ks *KeySet) verifySignature(e *Envelope, buf []byte) error {
	key, ok := ks.Get(e.SigKeyID)
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownKey, e.SigKeyID)
	}
	sig, err := base64.RawURLEncoding.DecodeString(e.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature is not a base64url Ed25519 signature", ErrBadSignature)
	}
	unsignedEnv := *e
	unsignedEnv.Signature = ""
	unsigned, err := appendCanonical(buf[:0], &unsignedEnv)
	if err != nil {
		return err
	}
	if !ed25519.Verify(key.Key, unsigned, sig) {
		return ErrBadSignature
	}
	return nil
}

// VerifyError names the event a verification failed at.
type VerifyError struct {
	Seq     uint64
	Subject string
	EventID string
	Err     error
}

func (e *VerifyError) Error() string {
	id := e.EventID
	if id == "" {
		id = "?"
	}
	return fmt.Sprintf("stream seq %d, subject %s, event %s: %v", e.Seq, e.Subject, id, e.Err)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// Head is where an aggregate's verified chain stands: the version, hash and
// id of its last valid event (the zero Head before its first).
type Head struct {
	Version int64
	Hash    Hash
	ID      string
}

// Follows checks that e, stored on subject with hash h, is the next event of
// the aggregate whose chain stands at head: it belongs to the subject's
// tenant and aggregate, its version is the next one, its prevhash names the
// head's hash, and it does not repeat the head's id. It returns the new head.
func Follows(head Head, subject string, e *Envelope, h Hash) (Head, error) {
	tenant, _, aggID, err := ParseSubject(subject)
	if err != nil {
		return head, err
	}
	if e.TenantID != tenant || e.Subject != aggID {
		return head, fmt.Errorf("%w: envelope says tenant %s aggregate %s", ErrSubjectMismatch, e.TenantID, e.Subject)
	}
	if head.ID != "" && e.ID == head.ID {
		return head, fmt.Errorf("%w: the aggregate's previous event has it", ErrDuplicateEventID)
	}
	if e.AggVersion <= head.Version {
		return head, fmt.Errorf("%w: version %d, the chain stands at %d", ErrReplayed, e.AggVersion, head.Version)
	}
	if e.AggVersion != head.Version+1 {
		return head, fmt.Errorf("%w: version %d follows %d", ErrVersionGap, e.AggVersion, head.Version)
	}
	if want := prevHashString(head.Hash); e.PrevHash != want {
		return head, fmt.Errorf("%w: prevhash %q, want %q", ErrBrokenChain, e.PrevHash, want)
	}
	return Head{Version: e.AggVersion, Hash: h, ID: e.ID}, nil
}

// CheckNext verifies one stored event at stream sequence seq on subject
// against the keys (signature, key retirement) and its aggregate's chain
// head, and returns the parsed envelope and the new head. Failures are
// *VerifyError naming the event.
func CheckNext(keys *KeySet, head Head, seq uint64, subject string, raw []byte) (*Envelope, Head, error) {
	e, h, err := keys.VerifyAt(seq, raw)
	if err != nil {
		id := ""
		if e != nil {
			id = e.ID
		}
		return e, head, &VerifyError{Seq: seq, Subject: subject, EventID: id, Err: err}
	}
	next, err := Follows(head, subject, e, h)
	if err != nil {
		return e, head, &VerifyError{Seq: seq, Subject: subject, EventID: e.ID, Err: err}
	}
	return e, next, nil
}

// ChainVerifier verifies a sequence of stored events in stream order: each
// event's signature, and per aggregate subject its version sequence and hash
// chain. Feed it every event of the aggregates being checked, from the first.
type ChainVerifier struct {
	keys  *KeySet
	heads map[string]Head
	ids   map[string]uint64
	count int
}

// NewChainVerifier returns a verifier using keys.
func NewChainVerifier(keys *KeySet) *ChainVerifier {
	return &ChainVerifier{keys: keys, heads: map[string]Head{}, ids: map[string]uint64{}}
}

// Next verifies the next stored event of subject at stream sequence seq. An
// event id seen anywhere before is refused too.
func (v *ChainVerifier) Next(seq uint64, subject string, raw []byte) error {
	e, head, err := CheckNext(v.keys, v.heads[subject], seq, subject, raw)
	if err != nil {
		return err
	}
	if prev, dup := v.ids[e.ID]; dup {
		return &VerifyError{Seq: seq, Subject: subject, EventID: e.ID, Err: fmt.Errorf("%w (first at seq %d)", ErrDuplicateEventID, prev)}
	}
	v.heads[subject] = head
	v.ids[e.ID] = seq
	v.count++
	return nil
}

// Count returns how many events verified.
func (v *ChainVerifier) Count() int { return v.count }

// Aggregates returns how many aggregate chains were seen.
func (v *ChainVerifier) Aggregates() int { return len(v.heads) }

// PrevHash returns the prevhash attribute value that follows an event with
// hash h (the empty string for the first event of an aggregate).
func PrevHash(h Hash) string { return prevHashString(h) }

func prevHashString(h Hash) string {
	if h.IsZero() {
		return ""
	}
	return h.String()
}

// Readable reports whether raw, as a writer is about to append it, is what
// every reader can read back: a well-formed envelope in canonical form (so
// that its hash and signature are what readers recompute) whose payload
// decodes to want, unchanged. Canonical JSON writes numbers as IEEE doubles,
// so an integer beyond 2^53 would come back as another number (or none):
// such an event is refused here rather than appended.
func Readable(raw []byte, want Payload) error {
	e, err := Parse(raw)
	if err != nil {
		return err
	}
	got, err := DecodePayload(e.Type, e.Data)
	if err != nil {
		return err
	}
	canon, err := appendCanonical(make([]byte, 0, len(raw)), e)
	if err != nil {
		return err
	}
	if string(canon) != string(raw) {
		return ErrNotCanonical
	}
	if want != nil {
		a, _ := json.Marshal(want)
		b, _ := json.Marshal(got)
		if string(a) != string(b) {
			return fmt.Errorf("%w: the payload reads back as %s, not %s (numbers beyond 2^53 do not survive canonical JSON)", ErrMalformed, b, a)
		}
	}
	return nil
}
