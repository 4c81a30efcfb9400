// Package k8sschema turns the Kubernetes API's OpenAPI v3 documents (the
// api/openapi-spec/v3 directory of the k8s.io/kubernetes module) into
// standalone, strict JSON schemas laid out the way kubeconform reads them
// (the kubernetes-json-schema layout: <kind>-<group>-<version>.json). It
// exists because no network is needed to validate manifests this way: the
// schemas are generated once from a pinned Kubernetes release and vendored.
//
// "Standalone" means no reference leaves the file: the definitions a kind
// needs are copied under "definitions". "Strict" means every object with
// declared properties rejects any other property, which is what catches a
// misspelt or misplaced field.
package k8sschema

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Kind is one resource kind to generate a schema for.
type Kind struct {
	// Doc is the OpenAPI document's file name, e.g.
	// "apis__apps__v1_openapi.json".
	Doc string
	// Name is the schema's name in the document, e.g.
	// "io.k8s.api.apps.v1.Deployment".
	Name string
}

// componentRef prefixes references in an OpenAPI v3 document.
const componentRef = "#/components/schemas/"

// Schema is a generated schema and the file kubeconform looks for it under.
type Schema struct {
	File string
	JSON []byte
}

// Generate returns the standalone strict schema of the named schema in an
// OpenAPI v3 document.
func Generate(doc []byte, name string) (Schema, error) {
	var d struct {
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return Schema{}, fmt.Errorf("OpenAPI document: %w", err)
	}
	all := d.Components.Schemas
	root, ok := all[name]
	if !ok {
		return Schema{}, fmt.Errorf("the document has no schema %s", name)
	}
	group, version, kind, err := groupVersionKind(root)
	if err != nil {
		return Schema{}, fmt.Errorf("%s: %w", name, err)
	}

	// Copy every definition reachable from the root, converted.
	defs := map[string]any{}
	pending := []string{name}
	for len(pending) > 0 {
		n := pending[0]
		pending = pending[1:]
		if _, done := defs[n]; done {
			continue
		}
		s, ok := all[n]
		if !ok {
			return Schema{}, fmt.Errorf("%s refers to %s, which the document does not define", name, n)
		}
		var refs []string
		defs[n] = convert(s, &refs)
		pending = append(pending, refs...)
	}

	out := defs[name].(map[string]any)
	delete(defs, name)
	props, _ := out["properties"].(map[string]any)
	if props == nil {
		return Schema{}, fmt.Errorf("%s has no properties", name)
	}
	apiVersion := version
	if group != "" {
		apiVersion = group + "/" + version
	}
	// A manifest of another kind or version must not validate against this
	// schema just because the fields happen to fit.
	props["apiVersion"] = map[string]any{"type": "string", "enum": []any{apiVersion}}
	props["kind"] = map[string]any{"type": "string", "enum": []any{kind}}
	out["$schema"] = "http://json-schema.org/draft-04/schema#"
	if len(defs) > 0 {
		out["definitions"] = defs
	}
	b, err := json.MarshalIndent(out, "", " ")
	if err != nil {
		return Schema{}, err
	}
	return Schema{File: FileName(group, version, kind), JSON: append(b, '\n')}, nil
}

// FileName is kubeconform's name for a kind's schema: the lower-case kind,
// the first label of the group (none for the core group) and the version,
// e.g. deployment-apps-v1.json, service-v1.json,
// poddisruptionbudget-policy-v1.json.
func FileName(group, version, kind string) string {
	parts := []string{strings.ToLower(kind)}
	if group != "" {
		parts = append(parts, strings.ToLower(strings.SplitN(group, ".", 2)[0]))
	}
	parts = append(parts, strings.ToLower(version))
	return strings.Join(parts, "-") + ".json"
}

func groupVersionKind(s map[string]any) (group, version, kind string, err error) {
	gvks, _ := s["x-kubernetes-group-version-kind"].([]any)
	if len(gvks) != 1 {
		return "", "", "", fmt.Errorf("not a top-level kind (x-kubernetes-group-version-kind is %v)", s["x-kubernetes-group-version-kind"])
	}
	gvk, _ := gvks[0].(map[string]any)
	group, _ = gvk["group"].(string)
	version, _ = gvk["version"].(string)
	kind, _ = gvk["kind"].(string)
	if version == "" || kind == "" {
		return "", "", "", fmt.Errorf("incomplete x-kubernetes-group-version-kind %v", gvk)
	}
	return group, version, kind, nil
}

// dropped are OpenAPI keywords that do not constrain a value (or are
// Kubernetes extensions) and only make the files bigger.
var dropped = []string{"description", "default", "example", "discriminator"}

// convert returns the JSON-schema (draft 4) form of an OpenAPI v3 schema
// node and appends the names it references to refs.
func convert(v any, refs *[]string) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = convert(e, refs)
		}
		return out
	case map[string]any:
		return convertObject(v, refs)
	default:
		return v
	}
}

func convertObject(in map[string]any, refs *[]string) map[string]any {
	out := map[string]any{}
	preserveUnknown := in["x-kubernetes-preserve-unknown-fields"] == true
	for k, v := range in {
		switch {
		case strings.HasPrefix(k, "x-") || slices.Contains(dropped, k):
		case k == "$ref":
			ref, _ := v.(string)
			n := strings.TrimPrefix(ref, componentRef)
			*refs = append(*refs, n)
			out[k] = "#/definitions/" + n
		case k == "properties":
			// Property names are not schema keywords: convert the values only.
			props := map[string]any{}
			for name, p := range v.(map[string]any) {
				props[name] = convert(p, refs)
			}
			out[k] = props
		case k == "format" && v == "int-or-string":
			// Expressed by the oneOf next to it; not a format a
			// validator knows.
		case k == "nullable":
		default:
			out[k] = convert(v, refs)
		}
	}
	if in["nullable"] == true {
		if t, ok := out["type"].(string); ok {
			out["type"] = []any{t, "null"}
		}
	}
	// Draft 4 ignores everything beside a $ref, so OpenAPI's
	// allOf-of-one-$ref (a $ref with a description or default, both
	// dropped) becomes the $ref itself; with other keywords left, allOf
	// stays and keeps them effective.
	if all, ok := out["allOf"].([]any); ok && len(all) == 1 && len(out) == 1 {
		if only, ok := all[0].(map[string]any); ok && len(only) == 1 && only["$ref"] != nil {
			return only
		}
	}
	if _, has := out["properties"]; has && !preserveUnknown {
		if _, set := out["additionalProperties"]; !set {
			out["additionalProperties"] = false
		}
	}
	return out
}
