package subscriber

import (
	"context"
	"errors"
	"net/http"
)

// HandlerOption adjusts the handler Handler returns.
type HandlerOption func(*handler)

// OnError makes the handler call fn for every request it does not
// acknowledge, with the status it answered and why. The handler logs
// nothing itself, so this is where a receiver logs refusals and failures.
// No error of this package quotes a secret.
func OnError(fn func(r *http.Request, status int, err error)) HandlerOption {
	return func(h *handler) { h.onError = fn }
}

// Handler returns an http.Handler that verifies each POSTed delivery with v
// and passes it to fn. It answers 204 when fn returns nil; StatusCode's
// status when verification fails (401, 400, 413, 503) or fn's error wraps
// one of this package's errors; 500 for any other error from fn, which
// the webhooker retries; 405 to other methods.
//
// The response body says what was wrong for a refused delivery, since
// Tenancy's operators see it in the delivery's attempts; an error from fn
// is only named by its kind, so that the receiver's internals do not leak.
func Handler(v *Verifier, fn func(ctx context.Context, d *Delivery) error, opts ...HandlerOption) http.Handler {
	h := &handler{v: v, fn: fn}
	for _, o := range opts {
		o(h)
	}
	return h
}

type handler struct {
	v       *Verifier
	fn      func(context.Context, *Delivery) error
	onError func(*http.Request, int, error)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.fail(w, r, http.StatusMethodNotAllowed, errors.New("deliveries are POSTed"), "deliveries are POSTed")
		return
	}
	// MaxBytesReader also tells the server to close the connection rather
	// than drain what is left of an oversized body.
	r.Body = http.MaxBytesReader(w, r.Body, h.v.maxBody)
	d, err := h.v.VerifyRequest(r)
	if err != nil {
		status, _ := classify(err)
		h.fail(w, r, status, err, err.Error())
		return
	}
	if err := h.fn(r.Context(), d); err != nil {
		status, kind := classify(err)
		msg := "the receiver could not process the delivery"
		if kind != nil {
			msg = kind.Error()
		}
		h.fail(w, r, status, err, msg)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) fail(w http.ResponseWriter, r *http.Request, status int, err error, msg string) {
	if h.onError != nil {
		h.onError(r, status, err)
	}
	http.Error(w, msg, status)
}
