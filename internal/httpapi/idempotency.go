package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/internal/idempotency"
)

// IdempotencyKeyHeader names the request header; ReplayedHeader marks a
// replayed response.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotent-Replayed"
)

// replayedHeaders are the response headers a replay repeats.
var replayedHeaders = []string{echo.HeaderContentType, echo.HeaderLocation, "ETag", SequenceHeader}

type recorder struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.buf.Write(b)
	return r.ResponseWriter.Write(b)
}

func validKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// idempotent makes a POST replayable under an Idempotency-Key: the same key
// and body return the first response (with Idempotent-Replayed: true); the
// same key with another body is a 422.
func (s *Server) idempotent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Request().Header.Get(IdempotencyKeyHeader)
		if key == "" || s.deps.Idempotency == nil {
			return next(c)
		}
		if !validKey(key) {
			return fmt.Errorf("%w: %s must be 1-255 visible ASCII characters", errMalformed, IdempotencyKeyHeader)
		}
		req := c.Request()
		body, err := io.ReadAll(http.MaxBytesReader(c.Response(), req.Body, s.deps.BodyLimit))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return fmt.Errorf("%w: the body exceeds %d bytes", errTooLarge, mbe.Limit)
			}
			return fmt.Errorf("%w: reading the body: %v", errMalformed, err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		ctx := req.Context()
		p := principal(c)
		storeKey := idempotency.Key(p.Issuer, p.Subject, p.TenantID, key)
		fingerprint := idempotency.Fingerprint(req.Method, req.URL.RequestURI(), body)
		rec, err := s.deps.Idempotency.Begin(ctx, storeKey, fingerprint)
		if errors.Is(err, idempotency.ErrReused) {
			return fmt.Errorf("%w: this %s was already used for a different request; use a new key for a new request", err, IdempotencyKeyHeader)
		}
		if errors.Is(err, idempotency.ErrInProgress) {
			return fmt.Errorf("%w: a request with this %s is still being processed; retry shortly", err, IdempotencyKeyHeader)
		}
		if err != nil {
			return err
		}
		if rec.Done {
			h := c.Response().Header()
			for k, v := range rec.Header {
				h.Set(k, v)
			}
			h.Set(ReplayedHeader, "true")
			// A replay may repeat a secret or personal data: never cached.
			h.Set("Cache-Control", "no-store")
			c.Response().WriteHeader(rec.Status)
			_, err := c.Response().Write(rec.Body)
			return err
		}
		c.Set(idempotentIDKey, rec.ID)

		rw := &recorder{ResponseWriter: c.Response().Writer}
		c.Response().Writer = rw
		if err := next(c); err != nil {
			// Render the error now so that its response is what is stored.
			c.Error(err)
		}
		c.Response().Writer = rw.ResponseWriter
		status := c.Response().Status
		// Store outside the request's context: the response is already
		// written and the record must not be lost if the client went away.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if status >= 500 {
			// Failures worth retrying must not be replayed.
			if err := s.deps.Idempotency.Abandon(sctx, storeKey); err != nil {
				s.log.WarnContext(ctx, "releasing idempotency key failed", "error", err)
			}
			return nil
		}
		stored(c, &rec, status, rw.buf.Bytes())
		if err := s.deps.Idempotency.Complete(sctx, storeKey, rec); err != nil {
			s.log.ErrorContext(ctx, "storing idempotent response failed; a retry with this key will run again", "error", err)
		}
		return nil
	}
}

// stored fills rec with the response to keep: its status, body and the
// headers a replay repeats, and the key scope that seals it.
func stored(c echo.Context, rec *idempotency.Record, status int, body []byte) {
	rec.Status, rec.Header, rec.Body = status, map[string]string{}, body
	for _, k := range replayedHeaders {
		if v := c.Response().Header().Get(k); v != "" {
			rec.Header[k] = v
		}
	}
	// About a tenant or a customer: sealed under its personal-data key,
	// erased with it.
	rec.TenantID, _ = c.Get(tenantKey).(string)
	if scope, ok := c.Get(sealScopeKey).(string); ok {
		rec.TenantID = scope
	}
}

// sealScopeKey holds, in the request's context, the personal-data key
// scope a stored response is sealed under when it is not its tenant's (a
// customer's own).
const sealScopeKey = "seal-scope"

// idempotentIDKey holds, in the request's context, the id a request sent
// with an Idempotency-Key gives what it creates.
const idempotentIDKey = "idempotent-id"

// idempotentID returns the id an idempotent request gives what it creates
// ("" without an Idempotency-Key: the use case makes one).
func idempotentID(c echo.Context) string {
	id, _ := c.Get(idempotentIDKey).(string)
	return id
}
