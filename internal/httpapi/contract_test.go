package httpapi_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/pkg/events"
)

// TestContractPolish keeps openapi.yaml useful to generated clients: every
// operation has a unique operationId and a declared tag, and the webhook
// event-type schema lists every event type the log can carry.
func TestContractPolish(t *testing.T) {
	doc, _ := spec(t)
	declared := map[string]bool{}
	for _, tag := range doc.Tags {
		declared[tag.Name] = true
	}
	seen := map[string]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			if op.OperationID == "" {
				t.Errorf("%s has no operationId", where)
			} else if prev, dup := seen[op.OperationID]; dup {
				t.Errorf("%s and %s share operationId %s", prev, where, op.OperationID)
			}
			seen[op.OperationID] = where
			if len(op.Tags) == 0 {
				t.Errorf("%s has no tag", where)
			}
			for _, tag := range op.Tags {
				if !declared[tag] {
					t.Errorf("%s uses tag %q, which the document does not declare", where, tag)
				}
			}
		}
	}
	pattern := doc.Components.Schemas["EventTypePattern"]
	if pattern == nil || len(pattern.Value.AnyOf) != 2 {
		t.Fatal("no EventTypePattern schema with an enum and a prefix pattern")
	}
	var listed []string
	for _, v := range pattern.Value.AnyOf[0].Value.Enum {
		listed = append(listed, v.(string))
	}
	for _, typ := range events.Types() {
		if !slices.Contains(listed, typ) {
			t.Errorf("EventTypePattern does not list %s", typ)
		}
	}
	for _, typ := range listed {
		if !slices.Contains(events.Types(), typ) {
			t.Errorf("EventTypePattern lists %s, which no event has", typ)
		}
	}
	grace := doc.Components.Schemas["RotateSecretRequest"].Value.Properties["grace"].Value.Description
	if !strings.Contains(grace, "at least 1m") || !strings.Contains(grace, "720h") {
		t.Errorf("the grace period's bounds are not stated: %q", grace)
	}
}
