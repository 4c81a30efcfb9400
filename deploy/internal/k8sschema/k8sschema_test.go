package k8sschema

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// doc is a small OpenAPI v3 document shaped like Kubernetes' own.
const doc = `{"openapi": "3.0.0", "components": {"schemas": {
 "io.example.v1.Widget": {
  "description": "A widget.",
  "type": "object",
  "x-kubernetes-group-version-kind": [{"group": "widgets.example.io", "version": "v1", "kind": "Widget"}],
  "properties": {
   "apiVersion": {"type": "string"}, "kind": {"type": "string"},
   "metadata": {"allOf": [{"$ref": "#/components/schemas/io.example.v1.Meta"}], "default": {}, "description": "m"},
   "spec": {"allOf": [{"$ref": "#/components/schemas/io.example.v1.Spec"}], "default": {}}
  }
 },
 "io.example.v1.Meta": {"type": "object", "properties": {"name": {"type": "string"},
   "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}}}},
 "io.example.v1.Spec": {"type": "object", "required": ["port"], "properties": {
   "port": {"allOf": [{"$ref": "#/components/schemas/io.example.IntOrString"}]},
   "replicas": {"type": "integer", "format": "int32"},
   "note": {"type": "string", "nullable": true},
   "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"known": {"type": "string"}}},
   "raw": {"type": "object"}}},
 "io.example.IntOrString": {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}]},
 "io.example.v1.Unused": {"type": "object", "properties": {"x": {"type": "string"}}},
 "io.example.v1.Pod": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
   "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}},
 "io.example.v1.Broken": {"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Broken"}],
   "properties": {"spec": {"$ref": "#/components/schemas/io.example.v1.Missing"}}}
}}}`

// mustCompile compiles a generated schema the way kubeconform does (draft 4).
func mustCompile(t *testing.T, s Schema) *jsonschema.Schema {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(s.JSON)))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	if err := c.AddResource("file:///"+s.File, v); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("file:///" + s.File)
	if err != nil {
		t.Fatalf("the generated schema does not compile: %v\n%s", err, s.JSON)
	}
	return sch
}

func TestGenerateValidates(t *testing.T) {
	s, err := Generate([]byte(doc), "io.example.v1.Widget")
	if err != nil {
		t.Fatal(err)
	}
	if s.File != "widget-widgets-v1.json" {
		t.Errorf("file %s", s.File)
	}
	sch := mustCompile(t, s)
	for _, tc := range []struct {
		name, manifest string
		valid          bool
	}{
		{"minimal", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spec": {"port": 80}}`, true},
		{"named port", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spec": {"port": "http"}}`, true},
		{"labels and nullable note", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"port": 1, "note": null}}`, true},
		{"unknown fields kept where preserved", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spec": {"port": 1, "extra": {"anything": 1}, "raw": {"a": 1}}}`, true},
		{"unknown top-level field", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spce": {"port": 1}}`, false},
		{"unknown field in a referenced definition", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "metadata": {"nmae": "a"}}`, false},
		{"missing required field", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spec": {"replicas": 1}}`, false},
		{"wrong type", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spec": {"port": 1, "replicas": "two"}}`, false},
		{"int-or-string given a bool", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "spec": {"port": true}}`, false},
		{"wrong apiVersion", `{"apiVersion": "widgets.example.io/v2", "kind": "Widget"}`, false},
		{"wrong kind", `{"apiVersion": "widgets.example.io/v1", "kind": "Gadget"}`, false},
		{"label value not a string", `{"apiVersion": "widgets.example.io/v1", "kind": "Widget", "metadata": {"labels": {"x": 1}}}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(tc.manifest))
			if err != nil {
				t.Fatal(err)
			}
			err = sch.Validate(v)
			if tc.valid && err != nil {
				t.Errorf("rejected: %v", err)
			}
			if !tc.valid && err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestGenerateOutput(t *testing.T) {
	s, err := Generate([]byte(doc), "io.example.v1.Widget")
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(s.JSON, &out); err != nil {
		t.Fatal(err)
	}
	defs, _ := out["definitions"].(map[string]any)
	for _, want := range []string{"io.example.v1.Meta", "io.example.v1.Spec", "io.example.IntOrString"} {
		if defs[want] == nil {
			t.Errorf("definition %s missing", want)
		}
	}
	if defs["io.example.v1.Unused"] != nil || defs["io.example.v1.Widget"] != nil {
		t.Error("unreachable definitions or the root itself were copied")
	}
	text := string(s.JSON)
	for _, absent := range []string{"components", "x-kubernetes", "description", "int-or-string", "nullable"} {
		if strings.Contains(text, absent) {
			t.Errorf("output still contains %q", absent)
		}
	}
	again, err := Generate([]byte(doc), "io.example.v1.Widget")
	if err != nil || string(again.JSON) != text {
		t.Error("generation is not deterministic")
	}
}

func TestGenerateErrors(t *testing.T) {
	for _, tc := range []struct{ name, schema, want string }{
		{"absent", "io.example.v1.Nothing", "no schema"},
		{"not a kind", "io.example.v1.Spec", "not a top-level kind"},
		{"dangling reference", "io.example.v1.Broken", "io.example.v1.Missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Generate([]byte(doc), tc.schema); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := Generate([]byte("{"), "x"); err == nil {
		t.Error("a broken document was accepted")
	}
}

func TestFileName(t *testing.T) {
	for _, tc := range []struct{ group, version, kind, want string }{
		{"apps", "v1", "Deployment", "deployment-apps-v1.json"},
		{"", "v1", "Service", "service-v1.json"},
		{"policy", "v1", "PodDisruptionBudget", "poddisruptionbudget-policy-v1.json"},
		{"networking.k8s.io", "v1", "NetworkPolicy", "networkpolicy-networking-v1.json"},
	} {
		if got := FileName(tc.group, tc.version, tc.kind); got != tc.want {
			t.Errorf("FileName(%q, %q, %q) = %s, want %s", tc.group, tc.version, tc.kind, got, tc.want)
		}
	}
	s, err := Generate([]byte(doc), "io.example.v1.Pod")
	if err != nil || s.File != "pod-v1.json" || !strings.Contains(string(s.JSON), `"v1"`) {
		t.Fatalf("core group: %v %s", err, s.JSON)
	}
}
