package subscriber

import (
	"errors"
	"net/http"
)

// Why a delivery was refused. Every error Verify, VerifyRequest and Event
// return is, or wraps, exactly one of these, so a receiver can choose its
// answer with errors.Is or StatusCode.
var (
	// ErrMissingHeaders: the request is not a Standard Webhooks delivery.
	ErrMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	// ErrBadTimestamp: webhook-timestamp cannot be read as a time.
	ErrBadTimestamp = errors.New("webhook-timestamp is not a Unix time in seconds")
	// ErrStale: webhook-timestamp is outside the tolerance, in the past or
	// the future; a captured delivery cannot be replayed after that.
	ErrStale = errors.New("webhook-timestamp is too far from the receiver's clock")
	// ErrBadSignature: no v1 signature in webhook-signature matches any
	// secret (wrong secret, altered body, id or timestamp).
	ErrBadSignature = errors.New("no v1 signature matches any configured secret")
	// ErrEventSignature: the delivery is authentic but the event's own
	// Ed25519 signature does not verify against the event keys (an unknown
	// key, or an event altered after it was signed).
	ErrEventSignature = errors.New("the event's signature does not verify")
	// ErrTooLarge: the body exceeds Config.MaxBody.
	ErrTooLarge = errors.New("delivery body too large")
	// ErrMalformed: the delivery is authentic but is not a Tenancy
	// CloudEvent (or its tenancy-* headers are not well-formed).
	ErrMalformed = errors.New("delivery is not a well-formed Tenancy event")
	// ErrKeysUnavailable: the event keys could not be loaded; retrying
	// later may succeed.
	ErrKeysUnavailable = errors.New("event keys unavailable")
	// ErrTruncated: the payload was left out of the delivery (see
	// Extensions.DataRef).
	ErrTruncated = errors.New("event delivered without its data; fetch it from dataref")
	// ErrPayloadType: As was asked for a payload type the event does not
	// carry.
	ErrPayloadType = errors.New("event payload is not of the requested type")
)

// statuses is the one place errors become HTTP statuses.
var statuses = []struct {
	err    error
	status int
}{
	{ErrTooLarge, http.StatusRequestEntityTooLarge},
	{ErrMissingHeaders, http.StatusUnauthorized},
	{ErrBadTimestamp, http.StatusUnauthorized},
	{ErrStale, http.StatusUnauthorized},
	{ErrBadSignature, http.StatusUnauthorized},
	{ErrEventSignature, http.StatusUnauthorized},
	{ErrMalformed, http.StatusBadRequest},
	{ErrTruncated, http.StatusBadRequest},
	{ErrPayloadType, http.StatusBadRequest},
	// Unavailable keys are this receiver's problem, not the sender's: 503
	// makes the webhooker retry on its schedule.
	{ErrKeysUnavailable, http.StatusServiceUnavailable},
}

// StatusCode returns the HTTP status a receiver should answer for err: 204
// for nil, 401 when the delivery is not proven authentic and recent, 400
// when it is authentic but not a Tenancy event (or not the payload
// expected), 413 when it is too large, 503 when the event keys cannot be
// loaded, and 500 for any other error (the receiver's own failure, which
// the webhooker will retry).
func StatusCode(err error) int {
	status, _ := classify(err)
	return status
}

// classify returns err's status and the sentinel it wraps (nil for a 500),
// so that a response can name the kind of failure without repeating
// whatever detail the full error carries.
func classify(err error) (int, error) {
	if err == nil {
		return http.StatusNoContent, nil
	}
	for _, s := range statuses {
		if errors.Is(err, s.err) {
			return s.status, s.err
		}
	}
	return http.StatusInternalServerError, nil
}
