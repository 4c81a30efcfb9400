package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/internal/services"
)

const webhooksUsage = `tenancy webhooks — manage webhook subscriptions and dead letters through the API

Usage:
  tenancy webhooks list
  tenancy webhooks create --url URL --types TYPES [--tenant ID] [--description TEXT] [--disabled]
                            prints the new subscription with its signing secret: store it, it is never shown again
  tenancy webhooks show ID
  tenancy webhooks update ID [--url URL] [--types TYPES] [--description TEXT] [--enable | --disable]
  tenancy webhooks delete ID
  tenancy webhooks rotate-secret ID [--grace 24h]
                            prints the new secret; the old one keeps signing for the grace period
  tenancy webhooks attempts ID [--event-seq N] [--page-size N] [--page-token T]
  tenancy webhooks dead-letters [--webhook ID] [--type T] [--from RFC3339] [--to RFC3339]
                            every dead letter that matches (all pages)
  tenancy webhooks dead-letter SEQ
                            one dead letter with its event and delivery attempts
  tenancy webhooks requeue SEQ | requeue --all --webhook ID
  tenancy webhooks discard SEQ --reason TEXT
  tenancy webhooks replay ID (--from-seq N --to-seq M | --from-time T --to-time T) [--types TYPES] [--tenant ID]

TYPES is a comma-separated list of event types or prefixes, like
tenancy.tenant.*,tenancy.webhook.*

Every command takes:
  --api URL       the Tenancy API (default $TENANCY_API_URL, else http://$TENANCY_HTTP_ADDR,
                  else http://127.0.0.1:8080 where 'tenancy dev' serves)
  --token TOKEN   a platform-admin bearer token (default $TENANCY_TOKEN, else the admin.token
                  file 'tenancy dev' writes in $TENANCY_DATA_DIR); prefer the environment,
                  command lines are visible to other users
  --timeout D     how long one request may take (default 30s)

Responses are printed to stdout as indented JSON; notes go to stderr. An error
answer prints its problem details to stderr and exits with status 1.
`

const webhookCommands = "list, create, show, update, delete, rotate-secret, attempts, dead-letters, dead-letter, requeue, discard, replay"

// apiConn is where and as whom a webhooks command calls the API.
type apiConn struct {
	api, token string
	timeout    time.Duration
}

func (c *apiConn) register(fs *flag.FlagSet) {
	fs.StringVar(&c.api, "api", "", "Tenancy API base URL (default $TENANCY_API_URL, else http://$TENANCY_HTTP_ADDR)")
	fs.StringVar(&c.token, "token", "", "bearer token (default $TENANCY_TOKEN, else the data directory's admin.token)")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of one request")
}

// apiClient is a thin client of the Tenancy API's webhook routes.
type apiClient struct {
	base   string
	token  string
	http   *http.Client
	stdout io.Writer
	stderr io.Writer
}

// client resolves the connection settings.
func (c *apiConn) client(getenv func(string) string, stdout, stderr io.Writer) (*apiClient, error) {
	base := c.api
	if base == "" {
		base = getenv("TENANCY_API_URL")
	}
	if base == "" {
		addr := getenv("TENANCY_HTTP_ADDR")
		if addr == "" {
			addr = "127.0.0.1:8080"
		}
		if strings.HasPrefix(addr, ":") { // a listen address for every interface
			addr = "127.0.0.1" + addr
		}
		base = "http://" + addr
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("API URL %q must be an http:// or https:// URL", base)}
	}
	if c.timeout <= 0 {
		return nil, usageError{"--timeout must be positive"}
	}
	token := strings.TrimSpace(c.token)
	if token == "" {
		token = strings.TrimSpace(getenv("TENANCY_TOKEN"))
	}
	if token == "" {
		path := filepath.Join(dataDir(getenv), services.DevAdminTokenFile)
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no API token: pass --token, set TENANCY_TOKEN, or run 'tenancy dev' (it writes %s)", path)
			}
			return nil, fmt.Errorf("reading the API token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return nil, fmt.Errorf("no API token: %s is empty", path)
		}
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: c.timeout}, stdout: stdout, stderr: stderr}, nil
}

// problem is the part of an RFC 9457 problem details answer the CLI shows.
type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Field   string   `json:"field"`
		Message string   `json:"message"`
		Allowed []string `json:"allowed"`
	} `json:"errors"`
	Field          string   `json:"field"`
	State          string   `json:"state"`
	AllowedActions []string `json:"allowed_actions"`
	CurrentVersion int64    `json:"current_version"`
	RequestID      string   `json:"request_id"`
}

const maxResponse = 64 << 20

// do sends one request and returns the body of a 2xx answer. body, when not
// nil, is sent as JSON of the given content type. Error answers are
// explained on stderr and returned as an error.
func (c *apiClient) do(ctx context.Context, method, path string, query url.Values, contentType string, body any) ([]byte, error) {
	target := c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", "tenancy-cli")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return raw, nil
	}
	c.explain(resp, raw)
	return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
}

// explain prints an error answer to stderr.
func (c *apiClient) explain(resp *http.Response, raw []byte) {
	var p problem
	if json.Unmarshal(raw, &p) != nil || (p.Title == "" && p.Detail == "") {
		text := strings.TrimSpace(string(raw))
		if len(text) > 2000 {
			text = text[:2000] + "…"
		}
		if text == "" {
			text = "(empty answer)"
		}
		fmt.Fprintf(c.stderr, "%s: %s\n", resp.Status, text)
		return
	}
	title := p.Title
	if title == "" {
		title = resp.Status
	}
	if p.Detail != "" {
		fmt.Fprintf(c.stderr, "%s: %s\n", title, p.Detail)
	} else {
		fmt.Fprintln(c.stderr, title)
	}
	for _, e := range p.Errors {
		line := "  " + e.Field + ": " + e.Message
		if e.Field == "" {
			line = "  " + e.Message
		}
		if len(e.Allowed) > 0 {
			line += " (allowed: " + strings.Join(e.Allowed, ", ") + ")"
		}
		fmt.Fprintln(c.stderr, line)
	}
	if p.Field != "" && len(p.Errors) == 0 {
		fmt.Fprintf(c.stderr, "  field: %s\n", p.Field)
	}
	if p.State != "" {
		fmt.Fprintf(c.stderr, "  state: %s; allowed actions: %s\n", p.State, strings.Join(p.AllowedActions, ", "))
	}
	if p.CurrentVersion != 0 {
		fmt.Fprintf(c.stderr, "  current version: %d\n", p.CurrentVersion)
	}
	if retry := resp.Header.Get("Retry-After"); retry != "" {
		fmt.Fprintf(c.stderr, "  retry after: %s\n", retry)
	}
	if p.RequestID != "" {
		fmt.Fprintf(c.stderr, "  request id: %s\n", p.RequestID)
	}
}

// print writes a JSON answer indented to stdout.
func (c *apiClient) print(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(bytes.TrimSpace(raw))
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(buf.Bytes())
	return err
}

func (c *apiClient) call(ctx context.Context, method, path string, query url.Values, contentType string, body any) error {
	raw, err := c.do(ctx, method, path, query, contentType, body)
	if err != nil {
		return err
	}
	return c.print(raw)
}

// parseInterleaved parses flags given before, between or after positional
// arguments and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// parseArgs parses flags and exactly the positional arguments named (for
// the usage message).
func parseArgs(fs *flag.FlagSet, args []string, usageLine string, names ...string) ([]string, error) {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) < len(names):
		return nil, usageError{fmt.Sprintf("missing %s; usage: %s", names[len(pos)], usageLine)}
	case len(pos) > len(names):
		return nil, usageError{fmt.Sprintf("unexpected argument %q; usage: %s", pos[len(names)], usageLine)}
	}
	for i, p := range pos {
		if strings.TrimSpace(p) == "" {
			return nil, usageError{fmt.Sprintf("%s is empty; usage: %s", names[i], usageLine)}
		}
	}
	return pos, nil
}

// splitTypes splits a comma-separated list of event types.
func splitTypes(s string) []string {
	out := []string{}
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func parseSeq(name, s, usageLine string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usageError{fmt.Sprintf("%s must be a positive whole number, not %q; usage: %s", name, s, usageLine)}
	}
	return n, nil
}

func checkTime(flagName, s string) error {
	if s == "" {
		return nil
	}
	if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
		return usageError{fmt.Sprintf("--%s must be an RFC 3339 time like 2026-11-01T00:00:00Z, not %q", flagName, s)}
	}
	return nil
}

// flagsSet reports which flags were given on the command line.
func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

func webhookPath(id string) string { return "/v1/webhooks/" + url.PathEscape(id) }

func deadLetterPath(seq uint64) string { return "/v1/dead-letters/" + strconv.FormatUint(seq, 10) }

const secretNote = "Store the secret now: it is never shown again. (If it is lost, rotate it with 'tenancy webhooks rotate-secret ID'.)"

func runWebhooks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, webhooksUsage)
		return usageError{"missing webhooks command; one of: " + webhookCommands}
	}
	sub, rest := args[0], args[1:]
	if sub == "help" || sub == "-h" || sub == "--help" {
		fmt.Fprint(stdout, webhooksUsage)
		return nil
	}
	fs := newFlags("webhooks "+sub, stderr)
	var conn apiConn
	conn.register(fs)
	connect := func() (*apiClient, error) { return conn.client(getenv, stdout, stderr) }

	switch sub {
	case "list":
		if _, err := parseArgs(fs, rest, "tenancy webhooks list"); err != nil {
			return err
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.call(ctx, http.MethodGet, "/v1/webhooks", nil, "", nil)

	case "create":
		const use = "tenancy webhooks create --url URL --types TYPES [--tenant ID] [--description TEXT] [--disabled]"
		u := fs.String("url", "", "the endpoint deliveries are POSTed to")
		types := fs.String("types", "", "comma-separated event types or prefixes, like tenancy.tenant.*,tenancy.webhook.*")
		tenant := fs.String("tenant", "", "deliver only this tenant's events (default: every tenant's)")
		desc := fs.String("description", "", "what the subscription is for")
		disabled := fs.Bool("disabled", false, "create it disabled (no deliveries until enabled)")
		if _, err := parseArgs(fs, rest, use); err != nil {
			return err
		}
		if *u == "" {
			return usageError{"--url is required; usage: " + use}
		}
		if len(splitTypes(*types)) == 0 {
			return usageError{"--types is required; usage: " + use}
		}
		body := map[string]any{"url": *u, "event_types": splitTypes(*types)}
		if *tenant != "" {
			body["tenant_id"] = *tenant
		}
		if *desc != "" {
			body["description"] = *desc
		}
		if *disabled {
			body["enabled"] = false
		}
		c, err := connect()
		if err != nil {
			return err
		}
		if err := c.call(ctx, http.MethodPost, "/v1/webhooks", nil, "application/json", body); err != nil {
			return err
		}
		fmt.Fprintln(stderr, secretNote)
		return nil

	case "show", "delete":
		use := "tenancy webhooks " + sub + " ID"
		pos, err := parseArgs(fs, rest, use, "ID")
		if err != nil {
			return err
		}
		c, err := connect()
		if err != nil {
			return err
		}
		method := http.MethodGet
		if sub == "delete" {
			method = http.MethodDelete
		}
		return c.call(ctx, method, webhookPath(pos[0]), nil, "", nil)

	case "update":
		const use = "tenancy webhooks update ID [--url URL] [--types TYPES] [--description TEXT] [--enable | --disable]"
		u := fs.String("url", "", "new endpoint URL")
		types := fs.String("types", "", "new comma-separated event types or prefixes (replaces the list)")
		desc := fs.String("description", "", "new description (\"\" clears it)")
		enable := fs.Bool("enable", false, "resume deliveries")
		disable := fs.Bool("disable", false, "pause deliveries")
		pos, err := parseArgs(fs, rest, use, "ID")
		if err != nil {
			return err
		}
		set := flagsSet(fs)
		if *enable && *disable {
			return usageError{"give --enable or --disable, not both"}
		}
		patch := map[string]any{}
		if set["url"] {
			patch["url"] = *u
		}
		if set["types"] {
			if len(splitTypes(*types)) == 0 {
				return usageError{"--types needs at least one event type or prefix"}
			}
			patch["event_types"] = splitTypes(*types)
		}
		if set["description"] {
			patch["description"] = *desc
		}
		if *enable {
			patch["enabled"] = true
		}
		if *disable {
			patch["enabled"] = false
		}
		if len(patch) == 0 {
			return usageError{"nothing to update; usage: " + use}
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.call(ctx, http.MethodPatch, webhookPath(pos[0]), nil, "application/merge-patch+json", patch)

	case "rotate-secret":
		const use = "tenancy webhooks rotate-secret ID [--grace 24h]"
		grace := fs.String("grace", "", "how long the old secret keeps signing, like 24h (default: the server's)")
		pos, err := parseArgs(fs, rest, use, "ID")
		if err != nil {
			return err
		}
		var body any
		if *grace != "" {
			if d, err := time.ParseDuration(*grace); err != nil || d <= 0 {
				return usageError{fmt.Sprintf("--grace must be a positive duration like 24h or 90m, not %q", *grace)}
			}
			body = map[string]string{"grace": *grace}
		}
		c, err := connect()
		if err != nil {
			return err
		}
		if err := c.call(ctx, http.MethodPost, webhookPath(pos[0])+"/rotate-secret", nil, "application/json", body); err != nil {
			return err
		}
		fmt.Fprintln(stderr, secretNote)
		return nil

	case "attempts":
		const use = "tenancy webhooks attempts ID [--event-seq N] [--page-size N] [--page-token T]"
		eventSeq := fs.Uint64("event-seq", 0, "only the attempts to deliver this event (stream sequence)")
		pageSize := fs.Int("page-size", 0, "attempts per page, 1-500 (default: the server's)")
		pageToken := fs.String("page-token", "", "continue from a previous answer's next_page_token")
		pos, err := parseArgs(fs, rest, use, "ID")
		if err != nil {
			return err
		}
		set := flagsSet(fs)
		q := url.Values{}
		if set["event-seq"] {
			if *eventSeq == 0 {
				return usageError{"--event-seq must be a positive whole number"}
			}
			q.Set("event_seq", strconv.FormatUint(*eventSeq, 10))
		}
		if set["page-size"] {
			if *pageSize < 1 {
				return usageError{"--page-size must be a positive whole number"}
			}
			q.Set("page_size", strconv.Itoa(*pageSize))
		}
		if *pageToken != "" {
			q.Set("page_token", *pageToken)
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.call(ctx, http.MethodGet, webhookPath(pos[0])+"/attempts", q, "", nil)

	case "dead-letters":
		const use = "tenancy webhooks dead-letters [--webhook ID] [--type T] [--from RFC3339] [--to RFC3339]"
		webhook := fs.String("webhook", "", "only this webhook's dead letters")
		typ := fs.String("type", "", "only dead letters of this event type")
		from := fs.String("from", "", "only dead letters of events at or after this RFC 3339 time")
		to := fs.String("to", "", "only dead letters of events before this RFC 3339 time")
		if _, err := parseArgs(fs, rest, use); err != nil {
			return err
		}
		if err := checkTime("from", *from); err != nil {
			return err
		}
		if err := checkTime("to", *to); err != nil {
			return err
		}
		q := url.Values{}
		for k, v := range map[string]string{"webhook_id": *webhook, "type": *typ, "from": *from, "to": *to} {
			if v != "" {
				q.Set(k, v)
			}
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.allDeadLetters(ctx, q)

	case "dead-letter":
		const use = "tenancy webhooks dead-letter SEQ"
		pos, err := parseArgs(fs, rest, use, "SEQ")
		if err != nil {
			return err
		}
		seq, err := parseSeq("SEQ", pos[0], use)
		if err != nil {
			return err
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.call(ctx, http.MethodGet, deadLetterPath(seq), nil, "", nil)

	case "requeue":
		const use = "tenancy webhooks requeue SEQ | tenancy webhooks requeue --all --webhook ID"
		all := fs.Bool("all", false, "requeue every dead letter of --webhook")
		webhook := fs.String("webhook", "", "the webhook whose dead letters --all requeues")
		pos, err := parseInterleaved(fs, rest)
		if err != nil {
			return err
		}
		var path string
		switch {
		case *all:
			if len(pos) > 0 {
				return usageError{"give SEQ or --all --webhook ID, not both; usage: " + use}
			}
			if *webhook == "" {
				return usageError{"--all needs --webhook ID; usage: " + use}
			}
			path = webhookPath(*webhook) + "/dead-letters/requeue"
		case *webhook != "":
			return usageError{"--webhook needs --all; usage: " + use}
		case len(pos) != 1:
			return usageError{"give one SEQ, or --all --webhook ID; usage: " + use}
		default:
			seq, err := parseSeq("SEQ", pos[0], use)
			if err != nil {
				return err
			}
			path = deadLetterPath(seq) + "/requeue"
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.call(ctx, http.MethodPost, path, nil, "", nil)

	case "discard":
		const use = "tenancy webhooks discard SEQ --reason TEXT"
		reason := fs.String("reason", "", "why the dead letter is given up on (recorded in the log)")
		pos, err := parseArgs(fs, rest, use, "SEQ")
		if err != nil {
			return err
		}
		seq, err := parseSeq("SEQ", pos[0], use)
		if err != nil {
			return err
		}
		if strings.TrimSpace(*reason) == "" {
			return usageError{"--reason is required; usage: " + use}
		}
		c, err := connect()
		if err != nil {
			return err
		}
		if err := c.call(ctx, http.MethodPost, deadLetterPath(seq)+"/discard", nil, "application/json", map[string]string{"reason": *reason}); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "discarded dead letter %d\n", seq)
		return nil

	case "replay":
		const use = "tenancy webhooks replay ID (--from-seq N --to-seq M | --from-time T --to-time T) [--types TYPES] [--tenant ID]"
		fromSeq := fs.Uint64("from-seq", 0, "first stream sequence to deliver again")
		toSeq := fs.Uint64("to-seq", 0, "last stream sequence to deliver again")
		fromTime := fs.String("from-time", "", "deliver again the events from this RFC 3339 time")
		toTime := fs.String("to-time", "", "... up to this RFC 3339 time")
		types := fs.String("types", "", "only these comma-separated event types or prefixes")
		tenant := fs.String("tenant", "", "only this tenant's events")
		pos, err := parseArgs(fs, rest, use, "ID")
		if err != nil {
			return err
		}
		set := flagsSet(fs)
		bySeq := set["from-seq"] || set["to-seq"]
		byTime := set["from-time"] || set["to-time"]
		body := map[string]any{}
		switch {
		case bySeq && byTime:
			return usageError{"give a range by sequence or by time, not both; usage: " + use}
		case bySeq:
			if *fromSeq == 0 || *toSeq == 0 {
				return usageError{"a sequence range needs --from-seq N and --to-seq M (both positive); usage: " + use}
			}
			if *toSeq < *fromSeq {
				return usageError{"--to-seq must not be below --from-seq"}
			}
			body["from_seq"], body["to_seq"] = *fromSeq, *toSeq
		case byTime:
			if *fromTime == "" || *toTime == "" {
				return usageError{"a time range needs --from-time and --to-time; usage: " + use}
			}
			if err := checkTime("from-time", *fromTime); err != nil {
				return err
			}
			if err := checkTime("to-time", *toTime); err != nil {
				return err
			}
			body["from_time"], body["to_time"] = *fromTime, *toTime
		default:
			return usageError{"give a range: --from-seq N --to-seq M, or --from-time T --to-time T; usage: " + use}
		}
		if set["types"] {
			if len(splitTypes(*types)) == 0 {
				return usageError{"--types needs at least one event type or prefix"}
			}
			body["types"] = splitTypes(*types)
		}
		if *tenant != "" {
			body["tenant_id"] = *tenant
		}
		c, err := connect()
		if err != nil {
			return err
		}
		return c.call(ctx, http.MethodPost, webhookPath(pos[0])+"/replay", nil, "application/json", body)
	}
	fmt.Fprint(stderr, webhooksUsage)
	return usageError{fmt.Sprintf("unknown webhooks command %q; one of: %s", sub, webhookCommands)}
}

// allDeadLetters follows next_page_token and prints every matching dead
// letter as one list.
func (c *apiClient) allDeadLetters(ctx context.Context, q url.Values) error {
	items := []json.RawMessage{}
	seen := map[string]bool{}
	q.Set("page_size", "500")
	for {
		raw, err := c.do(ctx, http.MethodGet, "/v1/dead-letters", q, "", nil)
		if err != nil {
			return err
		}
		var page struct {
			Items         []json.RawMessage `json:"items"`
			NextPageToken string            `json:"next_page_token"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return fmt.Errorf("GET /v1/dead-letters: unexpected answer: %w", err)
		}
		items = append(items, page.Items...)
		if page.NextPageToken == "" {
			break
		}
		if seen[page.NextPageToken] {
			return fmt.Errorf("GET /v1/dead-letters: the API repeated page token %q", page.NextPageToken)
		}
		seen[page.NextPageToken] = true
		q.Set("page_token", page.NextPageToken)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		Items []json.RawMessage `json:"items"`
	}{items}); err != nil {
		return err
	}
	_, err := c.stdout.Write(buf.Bytes())
	return err
}
