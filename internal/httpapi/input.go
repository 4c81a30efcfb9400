package httpapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/pkg/domain"
)

// checkInput refuses, before any handler sees them, query strings and path
// parameters no handler should have to guard against: percent-encoding
// that does not decode (Go's query parser drops such a parameter without
// a word, so a misspelt filter would silently widen a listing), an
// unescaped ';' (likewise dropped), invalid UTF-8, and NUL or other
// control characters (which would reach NATS subjects and SQL). Each
// refusal is a 422 naming the parameter.
func (s *Server) checkInput(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := checkQuery(c.Request().URL.RawQuery); err != nil {
			return err
		}
		values := c.ParamValues()
		for i, name := range c.ParamNames() {
			if i < len(values) {
				if err := checkValue(name, values[i]); err != nil {
					return err
				}
			}
		}
		return next(c)
	}
}

// checkQuery checks every name=value pair of a raw query string.
func checkQuery(raw string) error {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return invalid(printable(k), "is not valid percent-encoding (use %XX with two hex digits)")
		}
		if err := checkValue(name, name); err != nil {
			return invalid(printable(name), "is not a valid parameter name")
		}
		if strings.Contains(v, ";") {
			return invalid(name, "contains an unescaped ';'; send it as %3B")
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return invalid(name, "is not valid percent-encoding (use %XX with two hex digits)")
		}
		if err := checkValue(name, value); err != nil {
			return err
		}
	}
	return nil
}

// checkValue refuses invalid UTF-8 and control characters in a parameter.
func checkValue(name, v string) error {
	switch {
	case !utf8.ValidString(v):
		return invalid(printable(name), "must be valid UTF-8")
	case strings.ContainsRune(v, 0):
		return invalid(printable(name), "must not contain NUL characters")
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return invalid(printable(name), "must not contain control characters")
	}
	return nil
}

// printable makes a parameter name safe to echo back in a problem.
func printable(name string) string {
	if utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsControl) < 0 {
		return name
	}
	return strconv.Quote(name)
}

// seqParam reads a stream sequence from the path parameter name: a
// missing or malformed one names no resource (404, what says what is
// sought); one beyond MaxSafeInteger is refused (422) rather than looked
// up.
func seqParam(c echo.Context, name, what string) (uint64, error) {
	raw := c.Param(name)
	seq, err := strconv.ParseUint(raw, 10, 64)
	if err != nil && strings.Trim(raw, "0123456789") == "" && raw != "" {
		return 0, outOfRange(name)
	}
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("no %s %q (sequences are positive whole numbers): %w", what, raw, domain.ErrNotFound)
	}
	if seq > MaxSafeInteger {
		return 0, outOfRange(name)
	}
	return seq, nil
}

// seqQuery reads an optional stream sequence from the query parameter
// name (0 when absent).
func seqQuery(c echo.Context, name, msg string) (uint64, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return 0, nil
	}
	seq, err := strconv.ParseUint(raw, 10, 64)
	if err != nil && strings.Trim(raw, "0123456789") == "" {
		return 0, outOfRange(name)
	}
	if err != nil {
		return 0, invalid(name, msg)
	}
	if seq > MaxSafeInteger {
		return 0, outOfRange(name)
	}
	return seq, nil
}

func outOfRange(name string) error {
	return invalid(name, fmt.Sprintf("is out of range: stream sequences are at most %d", int64(MaxSafeInteger)))
}
