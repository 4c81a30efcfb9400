package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

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

// decodeStrict decodes one JSON value into v, refusing unknown members,
// trailing data and type mismatches with messages that name the field.
func decodeStrict(body []byte, v any) error {
	if len(body) == 0 {
		return fmt.Errorf("%w: the request body is empty; send a JSON object", errMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return fmt.Errorf("%w: unexpected data after the JSON object", errMalformed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: unexpected data after the JSON object", errMalformed)
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%w: invalid JSON at byte %d: %v", errMalformed, syn.Offset, syn)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%w: the JSON ends too early", errMalformed)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return fmt.Errorf("%w: the body must be a JSON object", errMalformed)
		}
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: field, Message: fmt.Sprintf("must be %s, not a JSON %s", jsonKind(typ.Type.Kind().String()), typ.Value)}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &domain.ValidationError{Fields: []domain.FieldError{{Field: name, Message: "unknown field; see openapi.yaml for the fields this operation accepts"}}}
	}
	return fmt.Errorf("%w: %v", errMalformed, err)
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
			if seq, err := strconv.ParseUint(rest, 10, 64); err == nil && seq > 0 {
				return seq, nil
			}
		}
	}
	return 0, &domain.ValidationError{Fields: []domain.FieldError{{Field: "page_token", Message: "is not a token this API issued; pass next_page_token from the previous page"}}}
}
