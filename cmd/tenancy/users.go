package main

import (
	"bufio"
	"context"
	"encoding/csv"
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

	"github.com/schollz/progressbar/v3"
)

const usersUsage = `tenancy users — manage the users inside a tenant through the API

Usage:
  tenancy users list --tenant ID [--q TEXT] [--enabled true|false] [--ou ID] [--role ROLE]
                            every user that matches (all pages)
  tenancy users import --tenant ID FILE [--batch N] [--failures FILE] [--quiet]
                            moves a directory in: FILE is .csv (a header row naming
                            username, email, first_name, last_name, enabled, roles,
                            required_actions and attr.NAME columns; roles and
                            required_actions separated by spaces or semicolons) or
                            .jsonl (one user object a line, as in openapi.yaml's
                            UserCreate). Rows go in batches (default 500) through
                            POST /v1/tenants/{id}/users/batch; each answers created,
                            unchanged or failed. A rerun after an interruption creates
                            nothing twice: rows that exist with the same values answer
                            unchanged. Failed rows are listed on stderr (or written to
                            --failures as JSON lines); the totals go to stdout.

Every command takes --api, --token and --timeout as 'tenancy webhooks' does
(see 'tenancy webhooks help'). --tenant takes a tenant id, or "me" for the
token's own tenant.
`

const userCommands = "list, import"

func runUsers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "import" {
		return runImport(ctx, args[1:], getenv, stdout, stderr)
	}
	return runAPICommands(ctx, "users", usersUsage, userCommands, map[string]webhookCommand{"list": usersList}, args, getenv, stdout, stderr)
}

func usersList(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	tenant := fs.String("tenant", "", "tenant id, or me")
	q := fs.String("q", "", "part of a username, email or name")
	enabled := fs.String("enabled", "", "true or false")
	ou := fs.String("ou", "", "only members of this org unit")
	role := fs.String("role", "", "only holders of this role (tenant-admin, tenant-viewer)")
	if _, err := parseArgs(fs, args, "tenancy users list --tenant ID [--q TEXT] [--enabled B] [--ou ID] [--role ROLE]"); err != nil {
		return nil, err
	}
	if *tenant == "" {
		return nil, usageError{"--tenant is required: a tenant id, or me"}
	}
	query := url.Values{}
	for k, v := range map[string]string{"q": *q, "enabled": *enabled, "ou": *ou, "role": *role} {
		if v != "" {
			query.Set(k, v)
		}
	}
	return &apiRequest{method: http.MethodGet, path: tenantPath(*tenant) + "/users", query: query, allPages: true}, nil
}

func tenantPath(id string) string { return "/v1/tenants/" + url.PathEscape(id) }

// importSummary is what 'tenancy users import' prints when it is done.
type importSummary struct {
	Rows      int `json:"rows"`
	Created   int `json:"created"`
	Unchanged int `json:"unchanged"`
	Failed    int `json:"failed"`
}

// batchAnswer is the batch route's answer.
type batchAnswer struct {
	Results []struct {
		Row     int             `json:"row"`
		Status  string          `json:"status"`
		ID      string          `json:"id"`
		Problem json.RawMessage `json:"problem"`
	} `json:"results"`
}

type importer struct {
	c        *apiClient
	tenant   string
	batch    int
	failures io.Writer
	bar      *progressbar.ProgressBar
	sum      importSummary
}

func runImport(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	const use = "tenancy users import --tenant ID FILE [--batch N] [--failures FILE] [--quiet]"
	fs := newFlags("users import", stderr)
	var conn apiConn
	conn.register(fs)
	tenant := fs.String("tenant", "", "tenant id, or me")
	batch := fs.Int("batch", 500, "rows per call (1-500)")
	failures := fs.String("failures", "", "write failed rows here as JSON lines instead of stderr")
	quiet := fs.Bool("quiet", false, "no progress bar")
	rest, err := parseArgs(fs, args, use, "FILE")
	if err != nil {
		return err
	}
	if *tenant == "" || *batch < 1 || *batch > 500 {
		return usageError{"--tenant is required, and --batch must be 1-500; usage: " + use}
	}
	rows, err := readUserFile(rest[0])
	if err != nil {
		return err
	}
	c, err := conn.client(getenv, stdout, stderr)
	if err != nil {
		return err
	}
	imp := &importer{c: c, tenant: *tenant, batch: *batch, failures: stderr}
	if *failures != "" {
		f, err := os.Create(*failures)
		if err != nil {
			return err
		}
		defer f.Close()
		imp.failures = f
	}
	if !*quiet {
		imp.bar = progressbar.NewOptions(len(rows), progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("importing users"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	if err := imp.run(ctx, rows); err != nil {
		return err
	}
	out, _ := json.MarshalIndent(imp.sum, "", "  ")
	fmt.Fprintln(stdout, string(out))
	if imp.sum.Failed > 0 {
		return fmt.Errorf("%d of %d rows failed (listed above); fix them and run the import again", imp.sum.Failed, imp.sum.Rows)
	}
	return nil
}

func (imp *importer) run(ctx context.Context, rows []map[string]any) error {
	imp.sum.Rows = len(rows)
	for start := 0; start < len(rows); start += imp.batch {
		end := min(start+imp.batch, len(rows))
		ans, err := imp.send(ctx, rows[start:end])
		if err != nil {
			return fmt.Errorf("rows %d-%d: %w (rows before them are in; run the import again to go on)", start+1, end, err)
		}
		for _, r := range ans.Results {
			switch r.Status {
			case "created":
				imp.sum.Created++
			case "unchanged":
				imp.sum.Unchanged++
			default:
				imp.sum.Failed++
				line, _ := json.Marshal(map[string]any{"row": start + r.Row + 1, "user": rows[start+r.Row], "problem": r.Problem})
				fmt.Fprintln(imp.failures, string(line))
			}
		}
		if imp.bar != nil {
			_ = imp.bar.Add(end - start)
		}
	}
	if imp.bar != nil {
		_ = imp.bar.Finish()
	}
	return nil
}

// send posts one batch, retrying what is worth retrying: the route is
// idempotent by username, so a batch sent twice creates nothing twice.
func (imp *importer) send(ctx context.Context, rows []map[string]any) (batchAnswer, error) {
	r := &apiRequest{method: http.MethodPost, path: tenantPath(imp.tenant) + "/users/batch", contentType: "application/json",
		body: map[string]any{"users": rows}}
	var ans batchAnswer
	for attempt := 1; ; attempt++ {
		req, err := imp.c.newRequest(ctx, r)
		if err != nil {
			return ans, err
		}
		resp, err := imp.c.http.Do(req)
		if err == nil {
			raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode == http.StatusOK:
				return ans, json.Unmarshal(raw, &ans)
			case resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusConflict:
				err = errors.New(resp.Status)
			default:
				imp.c.explain(resp, raw)
				return ans, errors.New(resp.Status)
			}
		}
		if attempt == 5 || ctx.Err() != nil {
			return ans, err
		}
		select {
		case <-ctx.Done():
			return ans, ctx.Err()
		case <-time.After(time.Duration(attempt*attempt) * 200 * time.Millisecond):
		}
	}
}

// readUserFile reads the rows of a .csv or .jsonl file into request
// objects.
func readUserFile(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return readCSV(f)
	case ".jsonl", ".ndjson":
		return readJSONL(f)
	}
	return nil, usageError{fmt.Sprintf("%s: the file must be .csv or .jsonl", path)}
}

func readJSONL(r io.Reader) ([]map[string]any, error) {
	var rows []map[string]any
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row map[string]any
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return nil, fmt.Errorf("line %d: not a JSON object: %v", n, err)
		}
		rows = append(rows, row)
	}
	return rows, sc.Err()
}

var csvColumns = map[string]bool{"username": true, "email": true, "first_name": true, "last_name": true, "enabled": true, "roles": true, "required_actions": true}

func readCSV(r io.Reader) ([]map[string]any, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("reading the header row: %w", err)
	}
	for i, h := range header {
		header[i] = strings.ToLower(strings.TrimSpace(h))
		if !csvColumns[header[i]] && !strings.HasPrefix(header[i], "attr.") {
			return nil, fmt.Errorf("unknown column %q; columns are username, email, first_name, last_name, enabled, roles, required_actions and attr.NAME", h)
		}
	}
	var rows []map[string]any
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		row, err := csvRow(header, rec)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		rows = append(rows, row)
	}
}

func csvRow(header, rec []string) (map[string]any, error) {
	row := map[string]any{}
	attrs := map[string]string{}
	for i, v := range rec {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		switch col := header[i]; {
		case col == "enabled":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("enabled must be true or false, not %q", v)
			}
			row[col] = b
		case col == "roles" || col == "required_actions":
			row[col] = strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ';' })
		case strings.HasPrefix(col, "attr."):
			attrs[strings.TrimPrefix(col, "attr.")] = v
		default:
			row[col] = v
		}
	}
	if len(attrs) > 0 {
		row["attributes"] = attrs
	}
	return row, nil
}
