package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// Extensions are the CloudEvents extension attributes Tenancy sets, read
// from an event.
type Extensions struct {
	// TenantID is the tenant that owns the event's aggregate
	// (events.PlatformTenantID for platform aggregates).
	TenantID string
	// AggVersion is the aggregate's version after this event, from 1: a
	// receiver keeping per-aggregate state can ignore versions it has
	// already applied.
	AggVersion int64
	// Actor is who caused the event: a token subject or "system:<service>".
	Actor string
	// CorrelationID ties together everything one request caused.
	CorrelationID string
	// CausationID is the id of the event that caused this one, if any.
	CausationID string
	// SigKeyID names the Ed25519 key that signed the event.
	SigKeyID string
	// Truncated is true when the event was too large for a delivery and
	// was sent without its data; DataRef then says where to fetch it.
	Truncated bool
	// DataRef is the API path of the full signed event (resolve it against
	// the Tenancy API's base URL; it needs an API token). Set only when
	// Truncated.
	DataRef string
}

// ExtensionsOf reads Tenancy's extension attributes from ev. It fails with
// ErrMalformed when tenantid or aggversion is missing or of the wrong type,
// since every Tenancy event has them.
func ExtensionsOf(ev event.Event) (Extensions, error) {
	var x Extensions
	var errs []error
	str := func(name string, dst *string, required bool) {
		v, ok := ev.Extensions()[name]
		if !ok {
			if required {
				errs = append(errs, fmt.Errorf("missing %s", name))
			}
			return
		}
		s, err := types.ToString(v)
		if err != nil || (required && s == "") {
			errs = append(errs, fmt.Errorf("%s is not a non-empty string", name))
		}
		*dst = s
	}
	str("tenantid", &x.TenantID, true)
	str("actor", &x.Actor, false)
	str("correlationid", &x.CorrelationID, false)
	str("causationid", &x.CausationID, false)
	str("sigkeyid", &x.SigKeyID, false)
	str("dataref", &x.DataRef, false)
	if v, ok := ev.Extensions()["aggversion"]; !ok {
		errs = append(errs, errors.New("missing aggversion"))
	} else if n, err := types.ToInteger(v); err != nil || n < 1 {
		errs = append(errs, errors.New("aggversion is not an integer >= 1"))
	} else {
		x.AggVersion = int64(n)
	}
	if v, ok := ev.Extensions()["tenancytruncated"]; ok {
		b, err := types.ToBool(v)
		if err != nil {
			errs = append(errs, errors.New("tenancytruncated is not a boolean"))
		}
		x.Truncated = b
	}
	if x.Truncated && x.DataRef == "" {
		errs = append(errs, errors.New("truncated without a dataref"))
	}
	if len(errs) > 0 {
		return Extensions{}, fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return x, nil
}

// Event parses one stored event, such as the full event fetched from a
// truncated delivery's DataRef, checking its Ed25519 signature when the
// verifier has event keys. Without them nothing authenticates the bytes
// but the connection they came over.
func (v *Verifier) Event(ctx context.Context, raw []byte) (event.Event, error) {
	ev, _, _, err := v.event(ctx, raw, false)
	return ev, err
}

// event parses raw into a CloudEvent and its extensions and, with event
// keys, verifies its signature; it reports whether it did. A truncated
// event (allowed only in a delivery) has no data, so its signature cannot
// be checked.
func (v *Verifier) event(ctx context.Context, raw []byte, allowTruncated bool) (event.Event, Extensions, bool, error) {
	fail := func(err error) (event.Event, Extensions, bool, error) {
		return event.Event{}, Extensions{}, false, err
	}
	var ev event.Event
	if err := json.Unmarshal(raw, &ev); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrMalformed, err))
	}
	if err := ev.Validate(); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrMalformed, err))
	}
	x, err := ExtensionsOf(ev)
	if err != nil {
		return fail(err)
	}
	if x.Truncated {
		if !allowTruncated {
			return fail(fmt.Errorf("%w: a truncated event is not a stored event", ErrMalformed))
		}
		return ev, x, false, nil
	}
	if v.eventKeys == nil {
		return ev, x, false, nil
	}
	ks, err := v.eventKeys.KeySet(ctx, x.SigKeyID)
	if err != nil {
		return fail(fmt.Errorf("%w: %w", ErrKeysUnavailable, err))
	}
	if _, _, err := ks.Verify(raw); err != nil {
		if errors.Is(err, events.ErrMalformed) {
			return fail(fmt.Errorf("%w: %w", ErrMalformed, err))
		}
		return fail(fmt.Errorf("%w: %w", ErrEventSignature, err))
	}
	return ev, x, true, nil
}

// Payload decodes ev's data into the pkg/events payload type registered for
// its type (retired types are upcast to their current form; a type this
// version of pkg/events does not know decodes to *events.Unknown, so a
// receiver built against an older version keeps working).
func Payload(ev event.Event) (events.Payload, error) {
	x, err := ExtensionsOf(ev)
	if err != nil {
		return nil, err
	}
	if x.Truncated {
		return nil, ErrTruncated
	}
	if len(ev.Data()) == 0 {
		return nil, fmt.Errorf("%w: event has no data", ErrMalformed)
	}
	p, err := events.DecodePayload(ev.Type(), ev.Data())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return p, nil
}

// As decodes ev's data as the payload type T, e.g.
// As[*events.TenantSuspended](d.Event). It fails with ErrPayloadType when
// ev carries another type, so a receiver can switch on ev.Type() and
// decode without a type assertion per case.
func As[T events.Payload](ev event.Event) (T, error) {
	var zero T
	p, err := Payload(ev)
	if err != nil {
		return zero, err
	}
	t, ok := p.(T)
	if !ok {
		return zero, fmt.Errorf("%w: %s carries %T, not %T", ErrPayloadType, ev.Type(), p, zero)
	}
	return t, nil
}
