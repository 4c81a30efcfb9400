package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Payload is the data of one event type. Every concrete payload is a
// permanent contract: its JSON shape is frozen by a golden file, and a change
// of shape is a new type with a new version suffix.
type Payload interface {
	// EventType returns the CloudEvents type, e.g. "tenancy.tenant.created.v1".
	EventType() string
}

// Summarizer is implemented by payloads that can describe themselves in one
// short line for the audit trail.
type Summarizer interface {
	Summary() string
}

// Unknown is the payload of an event type this build does not know, kept
// verbatim so that consumers can skip, log or forward it without failing.
type Unknown struct {
	Type string
	Data json.RawMessage
}

// EventType implements Payload.
func (u *Unknown) EventType() string { return u.Type }

// Summary implements Summarizer.
func (u *Unknown) Summary() string { return "event of a type this version does not know" }

var (
	registry  = map[string]func() Payload{}
	upcasters = map[string]func(json.RawMessage) (Payload, error){}
)

func register(fns ...func() Payload) {
	for _, fn := range fns {
		t := fn().EventType()
		if _, dup := registry[t]; dup {
			panic("events: type registered twice: " + t)
		}
		registry[t] = fn
	}
}

// registerUpcaster makes an old, retired event type decodable by converting
// its data into a current payload.
func registerUpcaster(oldType string, fn func(json.RawMessage) (Payload, error)) {
	upcasters[oldType] = fn
}

// Types returns every event type this build can produce, sorted.
func Types() []string {
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// New returns an empty payload of a known type.
func New(typ string) (Payload, bool) {
	fn, ok := registry[typ]
	if !ok {
		return nil, false
	}
	return fn(), true
}

// ErrBadPayload reports event data that does not match its type's contract.
var ErrBadPayload = errors.New("event data does not match its type")

// DecodePayload decodes the data of an event of type typ. Unknown types
// decode to *Unknown; retired types are upcast to their current form.
func DecodePayload(typ string, data []byte) (Payload, error) {
	if fn, ok := registry[typ]; ok {
		p := fn()
		if err := json.Unmarshal(data, p); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadPayload, typ, err)
		}
		return p, nil
	}
	if up, ok := upcasters[typ]; ok {
		p, err := up(json.RawMessage(data))
		if err != nil {
			return nil, fmt.Errorf("%w: upcast %s: %v", ErrBadPayload, typ, err)
		}
		return p, nil
	}
	return &Unknown{Type: typ, Data: append(json.RawMessage(nil), data...)}, nil
}

// Decode parses a stored event and decodes its payload.
func Decode(raw []byte) (*Envelope, Payload, error) {
	e, err := Parse(raw)
	if err != nil {
		return nil, nil, err
	}
	p, err := DecodePayload(e.Type, e.Data)
	if err != nil {
		return e, nil, err
	}
	return e, p, nil
}
