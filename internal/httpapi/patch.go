package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// mergePatch is a JSON merge patch document (RFC 7396) being turned into a
// command: the one parser of every PATCH route. Its members are visited in
// name order, so that errors come out in a stable order, and every problem
// is collected into one 422.
type mergePatch struct {
	members map[string]json.RawMessage
	errs    []domain.FieldError
}

// parseMergePatch reads a merge patch strictly: one JSON object, nothing
// after it.
func parseMergePatch(body []byte) (*mergePatch, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: the request body is empty; send a JSON merge patch object", errMalformed)
	}
	p := &mergePatch{}
	if err := decodeStrict(body, &p.members); err != nil {
		return nil, err
	}
	return p, nil
}

// each calls fn for every member, in name order. A member readOnly names
// is refused with the reason given there instead.
func (p *mergePatch) each(readOnly map[string]string, fn func(key string, raw json.RawMessage)) {
	for _, key := range slices.Sorted(maps.Keys(p.members)) {
		if why, ro := readOnly[key]; ro {
			p.bad(key, why)
			continue
		}
		fn(key, p.members[key])
	}
}

func (p *mergePatch) bad(field, msg string) {
	p.errs = append(p.errs, domain.FieldError{Field: field, Message: msg})
}

// unknown refuses a member the resource does not have.
func (p *mergePatch) unknown(field, resource string) {
	p.bad(field, "unknown field; see openapi.yaml for the fields of "+resource)
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// str reads a string member; null clears a nullable one (the empty string).
func (p *mergePatch) str(field string, raw json.RawMessage, nullable bool) *string {
	if isNull(raw) {
		if nullable {
			empty := ""
			return &empty
		}
		p.bad(field, "cannot be removed; send a new value")
		return nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		p.bad(field, "must be a string")
		return nil
	}
	return &v
}

// boolean reads a true/false member.
func (p *mergePatch) boolean(field string, raw json.RawMessage) *bool {
	var v bool
	if isNull(raw) || json.Unmarshal(raw, &v) != nil {
		p.bad(field, "must be true or false")
		return nil
	}
	return &v
}

// strings reads an array of strings; msg says what it must be.
func (p *mergePatch) strings(field string, raw json.RawMessage, msg string) *[]string {
	var v []string
	if isNull(raw) || json.Unmarshal(raw, &v) != nil || v == nil {
		p.bad(field, msg)
		return nil
	}
	return &v
}

// strictly decodes a member into v, refusing unknown members; msg says what
// it must be.
func (p *mergePatch) strictly(field string, raw json.RawMessage, v any, msg string) bool {
	if err := jsonv2.Unmarshal(raw, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		p.bad(field, msg)
		return false
	}
	return true
}

// mapPatch reads a nested merge patch of a string map: null replaces the
// whole map, a null value removes its key.
func (p *mergePatch) mapPatch(field string, raw json.RawMessage) *domain.MapPatch {
	if isNull(raw) {
		return &domain.MapPatch{Replace: true}
	}
	var m map[string]*string
	if err := json.Unmarshal(raw, &m); err != nil {
		p.bad(field, "must be an object whose values are strings (or null to remove a key)")
		return nil
	}
	return &domain.MapPatch{Values: m}
}

// err returns every problem found, or nil.
func (p *mergePatch) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return &domain.ValidationError{Fields: p.errs}
}
