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

	"github.com/tenancyhq/tenancy/internal/run/dev"
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

// webhookCommand parses the flags (registered on fs, next to the connection
// flags) and arguments of one subcommand into the request it makes. It
// sends nothing: malformed command lines fail before any connection.
type webhookCommand func(fs *flag.FlagSet, args []string) (*apiRequest, error)

// webhookHandlers are the subcommands of 'tenancy webhooks'.
var webhookHandlers = map[string]webhookCommand{
	"list":          webhooksList,
	"create":        webhooksCreate,
	"show":          webhookByID("show", http.MethodGet),
	"update":        webhooksUpdate,
	"delete":        webhookByID("delete", http.MethodDelete),
	"rotate-secret": webhooksRotateSecret,
	"attempts":      webhooksAttempts,
	"dead-letters":  webhooksDeadLetters,
	"dead-letter":   webhooksDeadLetter,
	"requeue":       webhooksRequeue,
	"discard":       webhooksDiscard,
	"replay":        webhooksReplay,
}

func runWebhooks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runAPICommands(ctx, "webhooks", webhooksUsage, webhookCommands, webhookHandlers, args, getenv, stdout, stderr)
}

// runAPICommands runs one subcommand of a command group that calls the API
// ('tenancy webhooks', 'tenancy customers'): it parses the command line
// into a request before connecting, then sends it.
func runAPICommands(ctx context.Context, group, usage, list string, handlers map[string]webhookCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"missing " + group + " command; one of: " + list}
	}
	sub, rest := args[0], args[1:]
	if sub == "help" || sub == "-h" || sub == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	command, ok := handlers[sub]
	if !ok {
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Sprintf("unknown %s command %q; one of: %s", group, sub, list)}
	}
	fs := newFlags(group+" "+sub, stderr)
	var conn apiConn
	conn.register(fs)
	req, err := command(fs, rest)
	if err != nil {
		return err
	}
	c, err := conn.client(getenv, stdout, stderr)
	if err != nil {
		return err
	}
	return c.send(ctx, req)
}

// apiRequest is the call one webhooks command makes.
type apiRequest struct {
	method, path string
	query        url.Values
	contentType  string // of the body
	body         any    // sent as JSON when not nil
	allPages     bool   // follow next_page_token and print every item as one list
	note         string // printed to stderr after a successful call
}

// postJSON is a POST of body (none when nil) as JSON.
func postJSON(path string, body any, note string) *apiRequest {
	return &apiRequest{method: http.MethodPost, path: path, contentType: "application/json", body: body, note: note}
}

const secretNote = "Store the secret now: it is never shown again. (If it is lost, rotate it with 'tenancy webhooks rotate-secret ID'.)"

func webhooksList(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	if _, err := parseArgs(fs, args, "tenancy webhooks list"); err != nil {
		return nil, err
	}
	return &apiRequest{method: http.MethodGet, path: "/v1/webhooks"}, nil
}

// webhookByID is a command that sends method, without a body, to the webhook
// its one argument names: show and delete.
func webhookByID(sub, method string) webhookCommand {
	return func(fs *flag.FlagSet, args []string) (*apiRequest, error) {
		id, err := parseID(fs, args, "tenancy webhooks "+sub+" ID")
		if err != nil {
			return nil, err
		}
		return &apiRequest{method: method, path: webhookPath(id)}, nil
	}
}

func webhooksCreate(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks create --url URL --types TYPES [--tenant ID] [--description TEXT] [--disabled]"
	u := fs.String("url", "", "the endpoint deliveries are POSTed to")
	types := fs.String("types", "", "comma-separated event types or prefixes, like tenancy.tenant.*,tenancy.webhook.*")
	tenant := fs.String("tenant", "", "deliver only this tenant's events (default: every tenant's)")
	desc := fs.String("description", "", "what the subscription is for")
	disabled := fs.Bool("disabled", false, "create it disabled (no deliveries until enabled)")
	if _, err := parseArgs(fs, args, use); err != nil {
		return nil, err
	}
	if *u == "" {
		return nil, usageError{"--url is required; usage: " + use}
	}
	if len(splitTypes(*types)) == 0 {
		return nil, usageError{"--types is required; usage: " + use}
	}
	body := map[string]any{"url": *u, "event_types": splitTypes(*types)}
	setNonEmpty(body, "tenant_id", *tenant)
	setNonEmpty(body, "description", *desc)
	if *disabled {
		body["enabled"] = false
	}
	return postJSON("/v1/webhooks", body, secretNote), nil
}

func webhooksUpdate(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks update ID [--url URL] [--types TYPES] [--description TEXT] [--enable | --disable]"
	u := fs.String("url", "", "new endpoint URL")
	types := fs.String("types", "", "new comma-separated event types or prefixes (replaces the list)")
	desc := fs.String("description", "", "new description (\"\" clears it)")
	enable := fs.Bool("enable", false, "resume deliveries")
	disable := fs.Bool("disable", false, "pause deliveries")
	id, err := parseID(fs, args, use)
	if err != nil {
		return nil, err
	}
	if *enable && *disable {
		return nil, usageError{"give --enable or --disable, not both"}
	}
	set := flagsSet(fs)
	patch := map[string]any{}
	if set["url"] {
		patch["url"] = *u
	}
	if err := setTypes(patch, "event_types", set["types"], *types); err != nil {
		return nil, err
	}
	if set["description"] {
		patch["description"] = *desc
	}
	if *enable || *disable {
		patch["enabled"] = *enable
	}
	if len(patch) == 0 {
		return nil, usageError{"nothing to update; usage: " + use}
	}
	return &apiRequest{method: http.MethodPatch, path: webhookPath(id), contentType: "application/merge-patch+json", body: patch}, nil
}

func webhooksRotateSecret(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks rotate-secret ID [--grace 24h]"
	grace := fs.String("grace", "", "how long the old secret keeps signing, like 24h (default: the server's)")
	id, err := parseID(fs, args, use)
	if err != nil {
		return nil, err
	}
	var body any
	if *grace != "" {
		if d, err := time.ParseDuration(*grace); err != nil || d <= 0 {
			return nil, usageError{fmt.Sprintf("--grace must be a positive duration like 24h or 90m, not %q", *grace)}
		}
		body = map[string]string{"grace": *grace}
	}
	return postJSON(webhookPath(id)+"/rotate-secret", body, secretNote), nil
}

func webhooksAttempts(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks attempts ID [--event-seq N] [--page-size N] [--page-token T]"
	eventSeq := fs.Uint64("event-seq", 0, "only the attempts to deliver this event (stream sequence)")
	pageSize := fs.Int("page-size", 0, "attempts per page, 1-500 (default: the server's)")
	pageToken := fs.String("page-token", "", "continue from a previous answer's next_page_token")
	id, err := parseID(fs, args, use)
	if err != nil {
		return nil, err
	}
	set := flagsSet(fs)
	q := url.Values{}
	if set["event-seq"] {
		if *eventSeq == 0 {
			return nil, usageError{"--event-seq must be a positive whole number"}
		}
		q.Set("event_seq", strconv.FormatUint(*eventSeq, 10))
	}
	if set["page-size"] {
		if *pageSize < 1 {
			return nil, usageError{"--page-size must be a positive whole number"}
		}
		q.Set("page_size", strconv.Itoa(*pageSize))
	}
	if *pageToken != "" {
		q.Set("page_token", *pageToken)
	}
	return &apiRequest{method: http.MethodGet, path: webhookPath(id) + "/attempts", query: q}, nil
}

func webhooksDeadLetters(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks dead-letters [--webhook ID] [--type T] [--from RFC3339] [--to RFC3339]"
	filters := map[string]*string{ // query parameter → flag
		"webhook_id": fs.String("webhook", "", "only this webhook's dead letters"),
		"type":       fs.String("type", "", "only dead letters of this event type"),
		"from":       fs.String("from", "", "only dead letters of events at or after this RFC 3339 time"),
		"to":         fs.String("to", "", "only dead letters of events before this RFC 3339 time"),
	}
	if _, err := parseArgs(fs, args, use); err != nil {
		return nil, err
	}
	if err := checkTimes("from", *filters["from"], "to", *filters["to"]); err != nil {
		return nil, err
	}
	q := url.Values{}
	for k, v := range filters {
		if *v != "" {
			q.Set(k, *v)
		}
	}
	return &apiRequest{method: http.MethodGet, path: "/v1/dead-letters", query: q, allPages: true}, nil
}

func webhooksDeadLetter(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	seq, err := parseSeqArg(fs, args, "tenancy webhooks dead-letter SEQ")
	if err != nil {
		return nil, err
	}
	return &apiRequest{method: http.MethodGet, path: deadLetterPath(seq)}, nil
}

func webhooksRequeue(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks requeue SEQ | tenancy webhooks requeue --all --webhook ID"
	all := fs.Bool("all", false, "requeue every dead letter of --webhook")
	webhook := fs.String("webhook", "", "the webhook whose dead letters --all requeues")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	switch {
	case *all && len(pos) > 0:
		return nil, usageError{"give SEQ or --all --webhook ID, not both; usage: " + use}
	case *all && *webhook == "":
		return nil, usageError{"--all needs --webhook ID; usage: " + use}
	case *all:
		return &apiRequest{method: http.MethodPost, path: webhookPath(*webhook) + "/dead-letters/requeue"}, nil
	case *webhook != "":
		return nil, usageError{"--webhook needs --all; usage: " + use}
	case len(pos) != 1:
		return nil, usageError{"give one SEQ, or --all --webhook ID; usage: " + use}
	}
	seq, err := parseSeq("SEQ", pos[0], use)
	if err != nil {
		return nil, err
	}
	return &apiRequest{method: http.MethodPost, path: deadLetterPath(seq) + "/requeue"}, nil
}

func webhooksDiscard(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy webhooks discard SEQ --reason TEXT"
	reason := fs.String("reason", "", "why the dead letter is given up on (recorded in the log)")
	seq, err := parseSeqArg(fs, args, use)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(*reason) == "" {
		return nil, usageError{"--reason is required; usage: " + use}
	}
	body := map[string]string{"reason": *reason}
	return postJSON(deadLetterPath(seq)+"/discard", body, fmt.Sprintf("discarded dead letter %d", seq)), nil
}

const replayUse = "tenancy webhooks replay ID (--from-seq N --to-seq M | --from-time T --to-time T) [--types TYPES] [--tenant ID]"

func webhooksReplay(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	rng := replayRange{
		fromSeq:  fs.Uint64("from-seq", 0, "first stream sequence to deliver again"),
		toSeq:    fs.Uint64("to-seq", 0, "last stream sequence to deliver again"),
		fromTime: fs.String("from-time", "", "deliver again the events from this RFC 3339 time"),
		toTime:   fs.String("to-time", "", "... up to this RFC 3339 time"),
	}
	types := fs.String("types", "", "only these comma-separated event types or prefixes")
	tenant := fs.String("tenant", "", "only this tenant's events")
	id, err := parseID(fs, args, replayUse)
	if err != nil {
		return nil, err
	}
	set := flagsSet(fs)
	body := map[string]any{}
	if err := rng.put(body, set); err != nil {
		return nil, err
	}
	if err := setTypes(body, "types", set["types"], *types); err != nil {
		return nil, err
	}
	setNonEmpty(body, "tenant_id", *tenant)
	return postJSON(webhookPath(id)+"/replay", body, ""), nil
}

// replayRange is the range flags of replay: by stream sequence or by time.
type replayRange struct {
	fromSeq, toSeq   *uint64
	fromTime, toTime *string
}

// put checks the range the flags that were given (set) describe and puts
// it into body.
func (r replayRange) put(body map[string]any, set map[string]bool) error {
	bySeq := set["from-seq"] || set["to-seq"]
	byTime := set["from-time"] || set["to-time"]
	switch {
	case bySeq && byTime:
		return usageError{"give a range by sequence or by time, not both; usage: " + replayUse}
	case bySeq:
		if *r.fromSeq == 0 || *r.toSeq == 0 {
			return usageError{"a sequence range needs --from-seq N and --to-seq M (both positive); usage: " + replayUse}
		}
		if *r.toSeq < *r.fromSeq {
			return usageError{"--to-seq must not be below --from-seq"}
		}
		body["from_seq"], body["to_seq"] = *r.fromSeq, *r.toSeq
	case byTime:
		if *r.fromTime == "" || *r.toTime == "" {
			return usageError{"a time range needs --from-time and --to-time; usage: " + replayUse}
		}
		if err := checkTimes("from-time", *r.fromTime, "to-time", *r.toTime); err != nil {
			return err
		}
		body["from_time"], body["to_time"] = *r.fromTime, *r.toTime
	default:
		return usageError{"give a range: --from-seq N --to-seq M, or --from-time T --to-time T; usage: " + replayUse}
	}
	return nil
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

// parseID parses flags and one webhook ID argument.
func parseID(fs *flag.FlagSet, args []string, usageLine string) (string, error) {
	pos, err := parseArgs(fs, args, usageLine, "ID")
	if err != nil {
		return "", err
	}
	return pos[0], nil
}

// parseSeqArg parses flags and one dead letter's SEQ argument.
func parseSeqArg(fs *flag.FlagSet, args []string, usageLine string) (uint64, error) {
	pos, err := parseArgs(fs, args, usageLine, "SEQ")
	if err != nil {
		return 0, err
	}
	return parseSeq("SEQ", pos[0], usageLine)
}

func parseSeq(name, s, usageLine string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usageError{fmt.Sprintf("%s must be a positive whole number, not %q; usage: %s", name, s, usageLine)}
	}
	return n, nil
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

// setTypes puts the event types of a --types flag, if it was given, into
// body under key.
func setTypes(body map[string]any, key string, given bool, types string) error {
	if !given {
		return nil
	}
	list := splitTypes(types)
	if len(list) == 0 {
		return usageError{"--types needs at least one event type or prefix"}
	}
	body[key] = list
	return nil
}

// setNonEmpty puts v into body under key unless it is empty.
func setNonEmpty(body map[string]any, key, v string) {
	if v != "" {
		body[key] = v
	}
}

// checkTimes checks the (optional) RFC 3339 times of two flags.
func checkTimes(flag1, s1, flag2, s2 string) error {
	if err := checkTime(flag1, s1); err != nil {
		return err
	}
	return checkTime(flag2, s2)
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
	base := apiBase(c.api, getenv)
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("API URL %q must be an http:// or https:// URL", base)}
	}
	if c.timeout <= 0 {
		return nil, usageError{"--timeout must be positive"}
	}
	token, err := apiToken(c.token, getenv)
	if err != nil {
		return nil, err
	}
	return &apiClient{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{Timeout: c.timeout}, stdout: stdout, stderr: stderr}, nil
}

// apiBase is the API's URL: the --api flag, else $TENANCY_API_URL, else
// http://$TENANCY_HTTP_ADDR, else where 'tenancy dev' serves.
func apiBase(flagValue string, getenv func(string) string) string {
	if flagValue != "" {
		return flagValue
	}
	if base := getenv("TENANCY_API_URL"); base != "" {
		return base
	}
	addr := getenv("TENANCY_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8080"
	}
	if strings.HasPrefix(addr, ":") { // a listen address for every interface
		addr = "127.0.0.1" + addr
	}
	return "http://" + addr
}

// apiToken is the bearer token: the --token flag, else $TENANCY_TOKEN, else
// the admin.token file 'tenancy dev' writes in the data directory.
func apiToken(flagValue string, getenv func(string) string) (string, error) {
	if token := strings.TrimSpace(flagValue); token != "" {
		return token, nil
	}
	if token := strings.TrimSpace(getenv("TENANCY_TOKEN")); token != "" {
		return token, nil
	}
	path := filepath.Join(dataDir(getenv), dev.AdminTokenFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("no API token: pass --token, set TENANCY_TOKEN, or run 'tenancy dev' (it writes %s)", path)
		}
		return "", fmt.Errorf("reading the API token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("no API token: %s is empty", path)
	}
	return token, nil
}

// send makes the request, prints its answer to stdout and then its note to
// stderr.
func (c *apiClient) send(ctx context.Context, r *apiRequest) error {
	var err error
	if r.allPages {
		err = c.printAllPages(ctx, r)
	} else {
		var raw []byte
		if raw, err = c.do(ctx, r); err == nil {
			err = c.print(raw)
		}
	}
	if err != nil {
		return err
	}
	if r.note != "" {
		fmt.Fprintln(c.stderr, r.note)
	}
	return nil
}

const maxResponse = 64 << 20

// do sends one request and returns the body of a 2xx answer. Error answers
// are explained on stderr and returned as an error.
func (c *apiClient) do(ctx context.Context, r *apiRequest) ([]byte, error) {
	req, err := c.newRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", r.method, r.path, err)
	}
	if resp.StatusCode/100 == 2 {
		return raw, nil
	}
	c.explain(resp, raw)
	return nil, fmt.Errorf("%s %s: %s", r.method, r.path, resp.Status)
}

// newRequest builds the HTTP request of r, with its body, when not nil, as
// JSON of r's content type, and a fresh Idempotency-Key on a POST.
func (c *apiClient) newRequest(ctx context.Context, r *apiRequest) (*http.Request, error) {
	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var rd io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("User-Agent", "tenancy-cli")
	if r.body != nil {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.method == http.MethodPost {
		req.Header.Set("Idempotency-Key", uuid.NewString())
	}
	return req, nil
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
	c.explainDetails(p, resp.Header.Get("Retry-After"))
}

// explainDetails prints the field errors and the other members of a
// problem, one a line.
func (c *apiClient) explainDetails(p problem, retryAfter string) {
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
	if retryAfter != "" {
		fmt.Fprintf(c.stderr, "  retry after: %s\n", retryAfter)
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

// printAllPages follows next_page_token and prints every item of r's
// answers as one list.
func (c *apiClient) printAllPages(ctx context.Context, r *apiRequest) error {
	items, err := c.allItems(ctx, r)
	if err != nil {
		return err
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
	_, err = c.stdout.Write(buf.Bytes())
	return err
}

// allItems gets every page of a GET list answer, 500 items a page.
func (c *apiClient) allItems(ctx context.Context, r *apiRequest) ([]json.RawMessage, error) {
	items := []json.RawMessage{}
	seen := map[string]bool{}
	r.query.Set("page_size", "500")
	for {
		raw, err := c.do(ctx, r)
		if err != nil {
			return nil, err
		}
		var page struct {
			Items         []json.RawMessage `json:"items"`
			NextPageToken string            `json:"next_page_token"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, fmt.Errorf("%s %s: unexpected answer: %w", r.method, r.path, err)
		}
		items = append(items, page.Items...)
		if page.NextPageToken == "" {
			return items, nil
		}
		if seen[page.NextPageToken] {
			return nil, fmt.Errorf("%s %s: the API repeated page token %q", r.method, r.path, page.NextPageToken)
		}
		seen[page.NextPageToken] = true
		r.query.Set("page_token", page.NextPageToken)
	}
}
