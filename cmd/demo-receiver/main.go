// Command demo-receiver is a webhook subscriber for demos and manual tests,
// and the worked example of pkg/subscriber: it verifies each delivery with
// it, answers 204 (401 when the signature is wrong or stale, 400 when an
// authentic body is not a Tenancy event, 413 when it is too large) and logs
// one JSON line per delivery.
//
// It uses pkg/subscriber and nothing else of Tenancy's, as a subscriber's
// own receiver would; everything else is the standard library.
//
// Configuration (environment):
//
//	RECEIVER_ADDR   listen address (default :9000)
//	WEBHOOK_SECRET  the subscription's secret, whsec_<base64>; several,
//	                comma-separated, while a rotation is in progress. Empty
//	                accepts every delivery unchecked (a demo is wired before
//	                the secret exists: it is shown once, when the
//	                subscription is created).
//	EVENT_KEYS_URL  optional: Tenancy's published event keys, e.g.
//	                http://api:8080/.well-known/tenancy/event-keys.json.
//	                When set, each event's own Ed25519 signature is checked
//	                too (not a truncated event's, whose data is not in the
//	                delivery). The keys are fetched at start-up (a failure
//	                is logged, not fatal: the API may start later) and again
//	                when an event names a key not fetched yet.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tenancyhq/tenancy/pkg/subscriber"
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

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil)).With("service", "demo-receiver")
	secrets, err := parseSecrets(getenv("WEBHOOK_SECRET"))
	if err != nil {
		return err
	}
	keys, err := parseKeysURL(getenv("EVENT_KEYS_URL"))
	if err != nil {
		return err
	}
	addr := strings.TrimSpace(getenv("RECEIVER_ADDR"))
	if addr == "" {
		addr = ":9000"
	}
	v, err := newVerifier(secrets, keys, time.Now)
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		log.Warn("WEBHOOK_SECRET is empty: accepting every delivery without checking its signature; set it to the subscription's secret")
	}
	if keys != nil {
		if err := keys.Refresh(ctx); err != nil {
			log.Warn("event keys not loaded yet; deliveries get 503 until they are", "error", err.Error())
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           newHandler(v, log),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
	}
	log.Info("listening", "addr", ln.Addr().String(), "secrets", len(secrets), "event_keys", keys != nil)
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

// parseSecrets splits WEBHOOK_SECRET into its secrets and checks each, so
// that a typo fails start-up rather than every delivery. The error never
// repeats a secret, since it ends up in logs.
func parseSecrets(s string) ([]string, error) {
	var secrets []string
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if _, err := subscriber.ParseSecret(f); err != nil {
			return nil, fmt.Errorf("WEBHOOK_SECRET entry %d: %w", i+1, err)
		}
		secrets = append(secrets, f)
	}
	return secrets, nil
}

// parseKeysURL returns a fetcher for EVENT_KEYS_URL, or nil when it is
// empty.
func parseKeysURL(s string) (*subscriber.KeyFetcher, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("EVENT_KEYS_URL is not an http(s) URL")
	}
	return &subscriber.KeyFetcher{URL: s}, nil
}

// newVerifier returns the verifier for the configured secrets; with none it
// accepts deliveries unchecked. keys may be nil.
func newVerifier(secrets []string, keys *subscriber.KeyFetcher, now func() time.Time) (*subscriber.Verifier, error) {
	c := subscriber.Config{Secrets: secrets, InsecureSkipSignature: len(secrets) == 0, Now: now}
	if keys != nil {
		// Not assigned when nil: a nil *KeyFetcher in the interface would
		// look like a key source.
		c.EventKeys = keys
	}
	return subscriber.NewVerifier(c)
}

// requestAttrs are the log attributes of a delivery read from its headers,
// so that a refused one can be matched with the webhooker's attempts.
func requestAttrs(r *http.Request) []any {
	h := r.Header
	return []any{
		"webhook_id", h.Get(subscriber.HeaderID),
		"sequence", h.Get(subscriber.HeaderSequence),
		"attempt", h.Get(subscriber.HeaderAttempt),
		"replay", h.Get(subscriber.HeaderReplay) == "true",
		"path", r.URL.Path,
	}
}

// newHandler serves GET /healthz and accepts deliveries as POST to any other
// path.
func newHandler(v *subscriber.Verifier, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	deliver := func(ctx context.Context, d *subscriber.Delivery) error {
		check := func(done bool) string {
			if done {
				return "verified"
			}
			return "unchecked"
		}
		log.InfoContext(ctx, "delivery",
			"webhook_id", d.ID,
			"sequence", strconv.FormatUint(d.Sequence, 10),
			"attempt", strconv.Itoa(d.Attempt),
			"replay", d.Replay,
			"signature", check(d.SignatureVerified),
			"event_signature", check(d.EventVerified),
			"event_id", d.Event.ID(),
			"type", d.Event.Type(),
			"subject", d.Event.Subject(),
			"tenant_id", d.TenantID,
			"aggversion", d.AggVersion,
			"truncated", d.Truncated,
			"dataref", d.DataRef,
			"bytes", len(d.Body),
		)
		return nil
	}
	mux.Handle("POST /", subscriber.Handler(v, deliver, subscriber.OnError(func(r *http.Request, status int, err error) {
		log.WarnContext(r.Context(), "delivery rejected", append(requestAttrs(r), "status", status, "reason", err.Error())...)
	})))
	return mux
}
