// Package domain holds Tenancy's aggregates as pure deciders, and the policy
// (catalog of regions and plans) they are decided against. Nothing here does
// IO, reads a clock or draws randomness: callers pass those in.
package domain

import (
	"errors"
	"fmt"
	"strings"
)

// Error kinds. Every error the domain (and the layers around it) returns
// wraps exactly one of these; the HTTP layer maps each kind to a status and a
// problem type in one table.
var (
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrInvalid         = errors.New("invalid input")
	ErrForbidden       = errors.New("forbidden")
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrPrecondition    = errors.New("not allowed in the current state")
	ErrVersionMismatch = errors.New("version mismatch")
	ErrUnavailable     = errors.New("temporarily unavailable")
)

// FieldError is one problem with one input field.
type FieldError struct {
	// Field is a JSON pointer-like path, e.g. "regions.preferred".
	Field   string   `json:"field"`
	Message string   `json:"message"`
	Allowed []string `json:"allowed,omitempty"`
}

// ValidationError collects every problem found in one input.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	msgs := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return "invalid input: " + strings.Join(msgs, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// fieldErrors accumulates FieldErrors.
type fieldErrors []FieldError

func (fe *fieldErrors) add(field, msg string, allowed ...string) {
	*fe = append(*fe, FieldError{Field: field, Message: msg, Allowed: allowed})
}

func (fe fieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return &ValidationError{Fields: fe}
}

// TransitionError reports a lifecycle action refused in the tenant's state.
type TransitionError struct {
	Action  string
	State   State
	Allowed []string
}

func (e *TransitionError) Error() string {
	allowed := "none (the state is terminal)"
	if len(e.Allowed) > 0 {
		allowed = strings.Join(e.Allowed, ", ")
	}
	return fmt.Sprintf("cannot %s a tenant that is %s; allowed actions in %s: %s", e.Action, e.State, e.State, allowed)
}

// Is makes errors.Is(err, ErrPrecondition) true.
func (e *TransitionError) Is(target error) bool { return target == ErrPrecondition }

// ConflictError reports a value that another aggregate already holds.
type ConflictError struct {
	Field   string
	Value   string
	Message string
}

func (e *ConflictError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// VersionMismatchError reports an If-Match precondition that failed.
type VersionMismatchError struct {
	Expected, Actual int64
	// Kind names what is versioned ("user"); empty means the tenant.
	Kind string
}

func (e *VersionMismatchError) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "tenant"
	}
	return fmt.Sprintf("the %s is at version %d, not %d; re-read it and retry", kind, e.Actual, e.Expected)
}

// Is makes errors.Is(err, ErrVersionMismatch) true.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }

// Customer policy refusals: a plan demands a customer (verified) before a
// tenant is activated. Both are preconditions, told apart so that a client
// knows what to do next.
var (
	ErrCustomerRequired    = fmt.Errorf("customer required: %w", ErrPrecondition)
	ErrCustomerNotVerified = fmt.Errorf("customer not verified: %w", ErrPrecondition)
	// ErrPlatformTenant refuses to suspend, archive or delete one of the
	// platform's own tenants (root, shared).
	ErrPlatformTenant = fmt.Errorf("platform tenant: %w", ErrPrecondition)
)

// ErrIntegrityBroken is the kind of a command refused because its
// aggregate's hash chain is broken: a message on its subject failed the
// log's integrity checks and no operator has resolved it yet.
var ErrIntegrityBroken = errors.New("integrity broken")

// IntegrityError reports an aggregate whose chain is broken at Seq.
type IntegrityError struct {
	Seq       uint64
	Violation string
}

func (e *IntegrityError) Error() string {
	return fmt.Sprintf("the aggregate's hash chain is broken at stream seq %d (%s): it takes no commands until an operator resolves that message (POST /v1/admin/quarantine/%d/resolve)",
		e.Seq, e.Violation, e.Seq)
}

// Is makes errors.Is(err, ErrIntegrityBroken) true.
func (e *IntegrityError) Is(target error) bool { return target == ErrIntegrityBroken }
