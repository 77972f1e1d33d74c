package model

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// FieldError is one problem with one field of one document.
type FieldError struct {
	Source string // file name, or "" when not from a file
	Doc    string // "VirtualService default/reviews", "document 2", or both joined by ": "
	Path   string // "spec.http[0].route[1].weight"; "" for the whole document
	Reason string
}

// Error renders "source: doc: path: reason", leaving out empty parts.
func (e *FieldError) Error() string {
	parts := make([]string, 0, 4)
	for _, p := range []string{e.Source, e.Doc, e.Path, e.Reason} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ": ")
}

// newObject returns an empty object of kind, or nil for an unknown kind.
func newObject(kind string) Object {
	switch kind {
	case KindMesh:
		return &Mesh{}
	case KindWorkload:
		return &Workload{}
	case KindVirtualService:
		return &VirtualService{}
	case KindDestinationRule:
		return &DestinationRule{}
	case KindTrafficSplit:
		return &TrafficSplit{}
	case KindServiceProfile:
		return &ServiceProfile{}
	case KindGatewayHTTPRoute:
		return &GatewayHTTPRoute{}
	case KindRateLimit:
		return &RateLimit{}
	case KindEnvoyFilter:
		return &EnvoyFilter{}
	case KindPeerAuthentication:
		return &PeerAuthentication{}
	case KindAuthorizationPolicy:
		return &AuthorizationPolicy{}
	case KindRequestAuthentication:
		return &RequestAuthentication{}
	}
	return nil
}

// apiVersions returns the apiVersions accepted for kind.
func apiVersions(kind string) []string {
	switch kind {
	case KindMesh, KindWorkload, KindRateLimit:
		return []string{APIVersionTrellis}
	case KindVirtualService, KindDestinationRule:
		return IstioNetworkingVersions
	case KindEnvoyFilter:
		return EnvoyFilterVersions
	case KindTrafficSplit:
		return TrafficSplitVersions
	case KindServiceProfile:
		return ServiceProfileVersions
	case KindGatewayHTTPRoute:
		return GatewayAPIVersions
	case KindPeerAuthentication, KindAuthorizationPolicy, KindRequestAuthentication:
		return IstioSecurityVersions
	}
	return nil
}

// rawDoc is one document of a file: its text and the line it starts on.
type rawDoc struct {
	text []byte
	line int
}

// splitDocuments cuts YAML text at lines that are "---".
func splitDocuments(data []byte) []rawDoc {
	var docs []rawDoc
	var cur bytes.Buffer
	start, n := 1, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimRight(line, " \t\r")
		if trimmed == "---" || strings.HasPrefix(trimmed, "--- ") || strings.HasPrefix(trimmed, "---\t") {
			docs = append(docs, rawDoc{text: bytes.Clone(cur.Bytes()), line: start})
			cur.Reset()
			start = n + 1
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	return append(docs, rawDoc{text: cur.Bytes(), line: start})
}

var yamlLineRegex = regexp.MustCompile(`line (\d+)`)

// shiftYAMLLine makes the line numbers of a YAML error relative to the file.
func shiftYAMLLine(msg string, first int) string {
	return yamlLineRegex.ReplaceAllStringFunc(msg, func(s string) string {
		n, err := strconv.Atoi(strings.TrimPrefix(s, "line "))
		if err != nil {
			return s
		}
		return "line " + strconv.Itoa(n+first-1)
	})
}

// Decode parses one or more YAML (or JSON) documents separated by '---'.
// source names the file for errors. Unknown kinds, unknown fields (at any
// depth), wrong types, malformed YAML and the errors of Validate are reported
// as *FieldError joined with errors.Join, all of them, naming the document and
// the field path. Empty documents are skipped. Namespaces default to
// "default" and Mesh ports to 80/http. The objects that decoded cleanly are
// returned even when err is not nil; callers that apply all or nothing must
// check err first. Validate's warnings are not returned: call Validate.
func Decode(data []byte, source string) ([]Object, error) {
	type parsed struct {
		js      []byte
		yamlErr string
	}
	var docs []parsed
	for _, d := range splitDocuments(data) {
		js, err := yaml.YAMLToJSONStrict(d.text)
		if err != nil {
			docs = append(docs, parsed{yamlErr: shiftYAMLLine(err.Error(), d.line)})
			continue
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue
		}
		docs = append(docs, parsed{js: js})
	}
	var objs []Object
	var errs []error
	seen := map[Key]int{}
	for i, d := range docs {
		docName := ""
		if len(docs) > 1 {
			docName = fmt.Sprintf("document %d", i+1)
		}
		if d.yamlErr != "" {
			errs = append(errs, &FieldError{Source: source, Doc: orDocNumber(docName, i), Reason: d.yamlErr})
			continue
		}
		obj, ferrs := decodeDocument(d.js)
		name := docName
		if obj != nil && obj.GetObjectMeta().Name != "" {
			name = joinDoc(docName, obj.Key().String())
		} else if name == "" {
			name = orDocNumber(docName, i)
		}
		if len(ferrs) == 0 {
			ferrs = validate(obj, nil)
			if prev, dup := seen[obj.Key()]; dup {
				ferrs = append(ferrs, &FieldError{Path: "metadata.name", Reason: fmt.Sprintf("duplicate of document %d", prev)})
			}
		}
		for _, fe := range ferrs {
			fe.Source, fe.Doc = source, name
			errs = append(errs, fe)
		}
		if len(ferrs) == 0 {
			seen[obj.Key()] = i + 1
			objs = append(objs, obj)
		}
	}
	return objs, errors.Join(errs...)
}

func orDocNumber(docName string, i int) string {
	if docName != "" {
		return docName
	}
	return fmt.Sprintf("document %d", i+1)
}

func joinDoc(a, b string) string {
	if a == "" {
		return b
	}
	return a + ": " + b
}

// DecodeObject decodes one stored object of a known kind from JSON (the
// control plane reads its store with it). It checks fields and types as
// Decode does, and defaults the namespace, but does not run Validate.
func DecodeObject(kind string, data []byte) (Object, error) {
	obj := newObject(kind)
	if obj == nil {
		return nil, &FieldError{Doc: kind, Path: "kind", Reason: fmt.Sprintf("unknown kind %q", kind)}
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, &FieldError{Doc: kind, Reason: fmt.Sprintf("invalid JSON: %v", err)}
	}
	var perrs []pathError
	walk(raw, reflect.TypeOf(obj).Elem(), "", &perrs)
	if len(perrs) > 0 {
		return nil, joinPathErrors("", kind, perrs)
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, &FieldError{Doc: kind, Reason: fmt.Sprintf("decoding: %v", err)}
	}
	if obj.GetTypeMeta().Kind != "" && obj.GetTypeMeta().Kind != kind {
		return nil, &FieldError{Doc: kind, Path: "kind", Reason: fmt.Sprintf("stored kind %q, want %q", obj.GetTypeMeta().Kind, kind)}
	}
	applyDefaults(obj)
	return obj, nil
}

func joinPathErrors(source, doc string, perrs []pathError) error {
	errs := make([]error, len(perrs))
	for i, p := range perrs {
		errs[i] = &FieldError{Source: source, Doc: doc, Path: p.path, Reason: p.reason}
	}
	return errors.Join(errs...)
}

// decodeDocument turns one JSON document into a typed object, reporting the
// kind, apiVersion, unknown fields and wrong types.
func decodeDocument(js []byte) (Object, []*FieldError) {
	var raw any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, []*FieldError{{Reason: fmt.Sprintf("invalid document: %v", err)}}
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, []*FieldError{{Reason: "want an object with apiVersion and kind, got " + jsonKind(raw)}}
	}
	kind, _ := m["kind"].(string)
	apiVersion, _ := m["apiVersion"].(string)
	switch {
	case m["kind"] == nil:
		return nil, []*FieldError{{Path: "kind", Reason: "required"}}
	case kind == "":
		return nil, []*FieldError{{Path: "kind", Reason: "want a non-empty string"}}
	case newObject(kind) == nil:
		return nil, []*FieldError{{Path: "kind", Reason: fmt.Sprintf("unknown kind %q", kind)}}
	case !slices.Contains(apiVersions(kind), apiVersion):
		return nil, []*FieldError{{Path: "apiVersion", Reason: fmt.Sprintf("%q is not an apiVersion of %s, want one of %s",
			apiVersion, kind, strings.Join(apiVersions(kind), ", "))}}
	}
	obj := newObject(kind)
	dropServerSetFields(kind, m)
	var perrs []pathError
	walk(raw, reflect.TypeOf(obj).Elem(), "", &perrs)
	if md, ok := m["metadata"].(map[string]any); ok {
		// name the object in errors even if its fields are wrong
		tmp := &ObjectMeta{}
		tmp.Name, _ = md["name"].(string)
		tmp.Namespace, _ = md["namespace"].(string)
		setMeta(obj, *tmp)
	}
	if len(perrs) > 0 {
		out := make([]*FieldError, len(perrs))
		for i, p := range perrs {
			out[i] = &FieldError{Path: p.path, Reason: p.reason}
		}
		return obj, out
	}
	if err := json.Unmarshal(js, obj); err != nil {
		return obj, []*FieldError{{Reason: fmt.Sprintf("decoding: %v", err)}}
	}
	applyDefaults(obj)
	return obj, nil
}

// metaHolder is every kind: they embed ObjectMeta.
type metaHolder interface{ objectMeta() *ObjectMeta }

func (o *ObjectMeta) objectMeta() *ObjectMeta { return o }

// setMeta stores metadata in obj (used to name a document in errors).
func setMeta(obj Object, md ObjectMeta) {
	if h, ok := obj.(metaHolder); ok {
		*h.objectMeta() = md
	}
}

// applyDefaults fills the defaults Decode promises: the namespace of every
// kind, and a Mesh's ports.
func applyDefaults(obj Object) {
	if h, ok := obj.(metaHolder); ok {
		m := h.objectMeta()
		m.Namespace = m.NamespaceOrDefault()
	}
	if o, ok := obj.(*Mesh); ok {
		for i := range o.Spec.Workloads {
			p := &o.Spec.Workloads[i].Port
			if p.Port == 0 {
				p.Port = 80
			}
			if p.Protocol == "" {
				p.Protocol = ProtocolHTTP
			}
		}
	}
}
