package httpapi

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// readBody reads a request body of one of the accepted media types, within
// the size limit. An empty body is returned as nil.
func (s *Server) readBody(c echo.Context, mediaTypes ...string) ([]byte, error) {
	req := c.Request()
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.deps.BodyLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("%w: the body exceeds %d bytes", errTooLarge, mbe.Limit)
		}
		return nil, fmt.Errorf("%w: reading the body: %v", errMalformed, err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	ct := req.Header.Get(echo.HeaderContentType)
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !slices.Contains(mediaTypes, mt) {
		return nil, fmt.Errorf("%w: got Content-Type %q; send %s", errMediaType, ct, strings.Join(mediaTypes, " or "))
	}
	return body, nil
}

// bindJSON reads a JSON request body and decodes it strictly into a T.
func bindJSON[T any](s *Server, c echo.Context) (T, error) {
	var v T
	body, err := s.readBody(c, echo.MIMEApplicationJSON)
	if err != nil {
		return v, err
	}
	return v, decodeStrict(body, &v)
}

// decodeStrict decodes one JSON value into v, refusing what a lenient
// decoder would let through and our handlers must never see: invalid
// UTF-8, duplicate member names, NUL characters in strings, integers no
// JSON reader holds exactly, members matched only case-insensitively or not
// at all, trailing data, and type mismatches. Every refusal names the
// member.
//
// Decoding uses github.com/go-json-experiment/json (the proposed
// encoding/json/v2), whose defaults are exactly these strict semantics:
// encoding/json matches names case-insensitively, keeps the last of two
// duplicate members and turns invalid UTF-8 into U+FFFD.
func decodeStrict(body []byte, v any) error {
	if len(body) == 0 {
		return fmt.Errorf("%w: the request body is empty; send a JSON object", errMalformed)
	}
	if err := checkJSON(body); err != nil {
		return err
	}
	if err := jsonv2.Unmarshal(body, v, jsonv2.RejectUnknownMembers(true)); err != nil {
		return jsonError(err)
	}
	return nil
}

// MaxSafeInteger is the largest integer every JSON reader holds exactly
// (2^53-1, JavaScript's Number.MAX_SAFE_INTEGER): numbers beyond it are
// refused in requests, never rounded or clamped.
const MaxSafeInteger = 1<<53 - 1

// checkJSON walks one JSON document: well-formed (UTF-8, no duplicate
// names, one value), no NUL in any string, every number within
// ±MaxSafeInteger.
func checkJSON(body []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	values := 0
	for {
		if dec.StackDepth() == 0 && values == 1 {
			if _, err := dec.ReadToken(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: unexpected data after the JSON object", errMalformed)
			}
			return nil
		}
		tok, err := dec.ReadToken()
		if err != nil {
			return jsonError(err)
		}
		if dec.StackDepth() == 0 {
			values++
		}
		switch tok.Kind() {
		case '"':
			if strings.ContainsRune(tok.String(), 0) {
				return fieldProblem(dec.StackPointer(), "must not contain NUL characters (\\u0000)")
			}
		case '0':
			if f, _ := tok.Float(); math.Abs(f) > MaxSafeInteger {
				return fieldProblem(dec.StackPointer(), fmt.Sprintf("is out of range: numbers must lie within ±%d, the integers JSON readers hold exactly", int64(MaxSafeInteger)))
			}
		}
	}
}

// fieldName turns a JSON pointer (/contacts/0/email) into the field name
// the API's errors use (contacts[0].email).
func fieldName(ptr jsontext.Pointer) string {
	var b strings.Builder
	for tok := range ptr.Tokens() {
		if _, err := strconv.ParseUint(tok, 10, 64); err == nil && b.Len() > 0 {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	if b.Len() == 0 {
		return "body"
	}
	return b.String()
}

func fieldProblem(ptr jsontext.Pointer, msg string) error {
	return &domain.ValidationError{Fields: []domain.FieldError{{Field: fieldName(ptr), Message: msg}}}
}

func jsonError(err error) error {
	var syn *jsontext.SyntacticError
	var sem *jsonv2.SemanticError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: the JSON ends too early", errMalformed)
	case errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return fieldProblem(syn.JSONPointer, "appears twice in its object; send each member once")
	case errors.As(err, &syn) && strings.Contains(syn.Err.Error(), "UTF-8"):
		return fieldProblem(syn.JSONPointer, "must be valid UTF-8")
	case errors.As(err, &syn):
		return fmt.Errorf("%w: invalid JSON at byte %d: %v", errMalformed, syn.ByteOffset, syn.Err)
	case errors.As(err, &sem) && errors.Is(sem.Err, jsonv2.ErrUnknownName):
		return fieldProblem(sem.JSONPointer, "unknown field (names are case-sensitive); see openapi.yaml for the fields this operation accepts")
	case errors.As(err, &sem) && sem.JSONPointer == "" && sem.GoType != nil && sem.GoType.Kind() == reflect.Struct:
		return fmt.Errorf("%w: the body must be a JSON object", errMalformed)
	case errors.As(err, &sem) && sem.GoType != nil:
		return fieldProblem(sem.JSONPointer, fmt.Sprintf("must be %s, not %s", jsonKind(sem.GoType.Kind().String()), kindName(sem.JSONKind)))
	}
	return fmt.Errorf("%w: %v", errMalformed, err)
}

// kindName describes a JSON value's kind for messages.
func kindName(k jsontext.Kind) string {
	switch k {
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "that value"
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	case "int", "int64", "int32", "uint64", "float64":
		return "a number"
	}
	return "of another type"
}

// ifMatch reads an If-Match header: 0 when absent or "*".
func ifMatch(c echo.Context) (int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	if strings.HasPrefix(h, "W/") {
		return 0, fmt.Errorf("%w: If-Match needs a strong ETag, not %s", errMalformed, h)
	}
	v, err := strconv.ParseInt(strings.Trim(h, `"`), 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: If-Match must be one ETag as returned by this API, like \"3\"", errMalformed)
	}
	return v, nil
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

func pageSize(c echo.Context) (int, error) {
	raw := c.QueryParam("page_size")
	if raw == "" {
		return DefaultPageSize, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > MaxPageSize {
		return 0, &domain.ValidationError{Fields: []domain.FieldError{{Field: "page_size", Message: fmt.Sprintf("must be a whole number from 1 to %d", MaxPageSize)}}}
	}
	return n, nil
}

// seqToken encodes a resume position as an opaque page token.
func seqToken(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte("s:" + strconv.FormatUint(seq, 10)))
}

func parseSeqToken(tok string) (uint64, error) {
	if tok == "" {
		return 1, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(raw), "s:"); ok {
			if seq, err := strconv.ParseUint(rest, 10, 64); err == nil && seq > 0 && seq <= MaxSafeInteger {
				return seq, nil
			}
		}
	}
	return 0, &domain.ValidationError{Fields: []domain.FieldError{{Field: "page_token", Message: "is not a token this API issued; pass next_page_token from the previous page"}}}
}
