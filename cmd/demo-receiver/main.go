// Command demo-receiver is a webhook subscriber for demos and manual tests:
// it checks each delivery's Standard Webhooks signature, answers 204 (or 401
// when the signature is wrong or stale) and logs one JSON line per delivery.
//
// It uses only the standard library and no Tenancy package on purpose, so
// that it doubles as an example for subscribers writing their own receiver.
//
// Configuration (environment):
//
//	RECEIVER_ADDR   listen address (default :9000)
//	WEBHOOK_SECRET  the subscription's secret, whsec_<base64>; several,
//	                comma-separated, while a rotation is in progress. Empty
//	                accepts every delivery unchecked (a demo is wired before
//	                the secret exists: it is shown once, when the
//	                subscription is created).
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-receiver:", err)
		os.Exit(1)
	}
}

// tolerance is how far a delivery's webhook-timestamp may be from the
// receiver's clock; the Standard Webhooks recommendation, which bounds how
// long a captured request can be replayed.
const tolerance = 5 * time.Minute

// maxBody bounds what one delivery may send. The webhooker sends at most
// WEBHOOK_MAX_BODY (256 KiB by default); this leaves room for a raised limit
// without letting a stray client exhaust memory.
const maxBody = 4 << 20

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", "demo-receiver")
	keys, err := parseSecrets(getenv("WEBHOOK_SECRET"))
	if err != nil {
		return err
	}
	addr := strings.TrimSpace(getenv("RECEIVER_ADDR"))
	if addr == "" {
		addr = ":9000"
	}
	if len(keys) == 0 {
		log.Warn("WEBHOOK_SECRET is empty: accepting every delivery without checking its signature; set it to the subscription's secret")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           newHandler(keys, time.Now, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
	}
	log.Info("listening", "addr", ln.Addr().String(), "secrets", len(keys))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// secretPrefix marks a Standard Webhooks secret; the rest is the base64 HMAC
// key.
const secretPrefix = "whsec_"

// parseSecrets decodes a comma-separated list of whsec_ secrets into HMAC
// keys. The error never repeats a secret, since it ends up in logs.
func parseSecrets(s string) ([][]byte, error) {
	var keys [][]byte
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(f, secretPrefix))
		if err != nil || len(k) == 0 {
			return nil, fmt.Errorf("WEBHOOK_SECRET entry %d is not whsec_ followed by base64", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Verification failures; each is a 401.
var (
	errMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	errBadTimestamp   = errors.New("webhook-timestamp is not a Unix time in seconds")
	errStale          = errors.New("webhook-timestamp is more than 5 minutes from the receiver's clock")
	errNoMatch        = errors.New("no v1 signature matches any configured secret")
)

// verify checks a delivery's Standard Webhooks signature against every key:
// it is authentic when any "v1,<base64>" in the space-separated
// webhook-signature is the HMAC-SHA256 of "id.timestamp.body" under any key.
// Several keys and several signatures both come from rotations: during the
// grace period Tenancy signs with the old and the new secret, and the
// receiver may hold either or both.
func verify(keys [][]byte, id, timestamp, signature string, body []byte, now time.Time) error {
	if id == "" || timestamp == "" || signature == "" {
		return errMissingHeaders
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errBadTimestamp
	}
	// Both directions: a timestamp far in the future would otherwise stay
	// replayable for as long as it is ahead.
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return errStale
	}
	var given [][]byte
	for _, s := range strings.Fields(signature) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			// Other schemes (v1a is asymmetric) are not ours to check.
			continue
		}
		if b, err := base64.StdEncoding.DecodeString(sig); err == nil {
			given = append(given, b)
		}
	}
	for _, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id + "." + timestamp + "."))
		m.Write(body)
		want := m.Sum(nil)
		for _, g := range given {
			// Constant time, so the comparison does not tell an attacker
			// how many leading bytes of a forged signature were right.
			if hmac.Equal(want, g) {
				return nil
			}
		}
	}
	return errNoMatch
}

// event is the part of a structured-mode CloudEvent the log line shows.
type event struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Subject  string `json:"subject"`
	TenantID string `json:"tenantid"`
}

// newHandler serves GET /healthz and accepts deliveries as POST to any other
// path. With no keys every delivery is accepted unchecked.
func newHandler(keys [][]byte, now func() time.Time, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			log.Warn("delivery body unreadable", "webhook_id", r.Header.Get("webhook-id"), "error", err.Error())
			http.Error(w, "body unreadable or too large", http.StatusRequestEntityTooLarge)
			return
		}
		h := r.Header
		attrs := []any{
			"webhook_id", h.Get("webhook-id"),
			"sequence", h.Get("tenancy-sequence"),
			"attempt", h.Get("tenancy-attempt"),
			"replay", h.Get("tenancy-replay") == "true",
			"path", r.URL.Path,
		}
		signature := "unchecked"
		if len(keys) > 0 {
			if err := verify(keys, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), body, now()); err != nil {
				log.Warn("delivery rejected", append(attrs, "reason", err.Error())...)
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			signature = "verified"
		}
		var ev event
		if err := json.Unmarshal(body, &ev); err != nil {
			// Authentic (or unchecked) but not a CloudEvent: still
			// acknowledged, since retrying would not change it.
			attrs = append(attrs, "body_error", err.Error())
		}
		log.Info("delivery", append(attrs,
			"signature", signature,
			"event_id", ev.ID,
			"type", ev.Type,
			"subject", ev.Subject,
			"tenant_id", ev.TenantID,
			"bytes", len(body),
		)...)
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
