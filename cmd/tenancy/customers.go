package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

const customersUsage = `tenancy customers — manage customers (the billing entities that own tenants) through the API

Usage:
  tenancy customers list [--q TEXT] [--kind individual|business] [--status STATUS]
                            every customer that matches (all pages)
  tenancy customers get ID
  tenancy customers create --from FILE
  tenancy customers create --kind KIND --legal-name NAME --display-name NAME [--email E] [--phone P]
                           [--realm-mode own|shared]
                            fiscal ids and the address go in --from FILE (a JSON body as in
                            openapi.yaml's CreateCustomer): command lines are visible to other users
  tenancy customers verify ID --status pending|completed|partial|due_for_rekyc
                           [--evidence KIND=REFERENCE]... [--note TEXT]
                            records a KYC (individual) or KYB (business) status; evidence names
                            documents held elsewhere, never the documents

Every command takes --api, --token and --timeout as 'tenancy webhooks' does
(see 'tenancy webhooks help').
`

const customerCommands = "list, get, create, verify"

var customerHandlers = map[string]webhookCommand{
	"list":   customersList,
	"get":    customerGet,
	"create": customersCreate,
	"verify": customersVerify,
}

func runCustomers(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runAPICommands(ctx, "customers", customersUsage, customerCommands, customerHandlers, args, getenv, stdout, stderr)
}

func customersList(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	q := fs.String("q", "", "search legal and display names")
	kind := fs.String("kind", "", "individual or business")
	status := fs.String("status", "", "verification status: pending, completed, partial or due_for_rekyc")
	if _, err := parseArgs(fs, args, "tenancy customers list [--q TEXT] [--kind KIND] [--status STATUS]"); err != nil {
		return nil, err
	}
	query := url.Values{}
	for k, v := range map[string]string{"q": *q, "kind": *kind, "verification_status": *status} {
		if v != "" {
			query.Set(k, v)
		}
	}
	return &apiRequest{method: http.MethodGet, path: "/v1/customers", query: query, allPages: true}, nil
}

func customerGet(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	id, err := parseID(fs, args, "tenancy customers get ID")
	if err != nil {
		return nil, err
	}
	return &apiRequest{method: http.MethodGet, path: "/v1/customers/" + url.PathEscape(id)}, nil
}

func customersCreate(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy customers create --from FILE | --kind KIND --legal-name NAME --display-name NAME [...]"
	from := fs.String("from", "", "a JSON file with the whole customer (openapi.yaml CreateCustomer)")
	fields := map[string]*string{
		"kind":         fs.String("kind", "", "individual or business"),
		"legal_name":   fs.String("legal-name", "", "the registered name"),
		"display_name": fs.String("display-name", "", "the name people use"),
		"email":        fs.String("email", "", "contact email"),
		"phone":        fs.String("phone", "", "E.164 phone number"),
		"realm_mode":   fs.String("realm-mode", "", "own (default) or shared"),
	}
	if _, err := parseArgs(fs, args, use); err != nil {
		return nil, err
	}
	if *from != "" {
		for name, v := range fields {
			if *v != "" {
				return nil, usageError{fmt.Sprintf("--from takes the whole customer; put %s in the file", name)}
			}
		}
		raw, err := os.ReadFile(*from)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", *from, err)
		}
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, usageError{fmt.Sprintf("%s is not a JSON object: %v", *from, err)}
		}
		return postJSON("/v1/customers", body, ""), nil
	}
	body := map[string]string{}
	for name, v := range fields {
		if *v != "" {
			body[name] = *v
		}
	}
	for _, required := range []string{"kind", "legal_name", "display_name"} {
		if body[required] == "" {
			return nil, usageError{fmt.Sprintf("missing --%s; usage: %s", strings.ReplaceAll(required, "_", "-"), use)}
		}
	}
	return postJSON("/v1/customers", body, ""), nil
}

// evidenceList collects repeated --evidence KIND=REFERENCE flags.
type evidenceList []map[string]string

func (e *evidenceList) String() string { return fmt.Sprint(*e) }

func (e *evidenceList) Set(v string) error {
	kind, ref, ok := strings.Cut(v, "=")
	if !ok || kind == "" || ref == "" {
		return fmt.Errorf("%q must look like KIND=REFERENCE (e.g. gst-certificate=dms://kyb/123)", v)
	}
	*e = append(*e, map[string]string{"kind": kind, "reference": ref})
	return nil
}

func customersVerify(fs *flag.FlagSet, args []string) (*apiRequest, error) {
	const use = "tenancy customers verify ID --status STATUS [--evidence KIND=REFERENCE]... [--note TEXT]"
	status := fs.String("status", "", "pending, completed, partial or due_for_rekyc")
	note := fs.String("note", "", "why (kept in the audit trail; no personal data)")
	var evidence evidenceList
	fs.Var(&evidence, "evidence", "a document reference, KIND=REFERENCE; repeat for several")
	id, err := parseID(fs, args, use)
	if err != nil {
		return nil, err
	}
	if *status == "" {
		return nil, usageError{"missing --status; usage: " + use}
	}
	body := map[string]any{"status": *status}
	if len(evidence) > 0 {
		body["evidence"] = evidence
	}
	if *note != "" {
		body["note"] = *note
	}
	return postJSON("/v1/customers/"+url.PathEscape(id)+"/verification", body, ""), nil
}
