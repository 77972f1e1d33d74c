package model

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// pathError is one problem found by the schema walker, before it is given a
// source and document name.
type pathError struct {
	path   string
	reason string
}

var (
	timeType      = reflect.TypeOf(time.Time{})
	identKeyRegex = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)
)

// joinPath appends a field name to a path.
func joinPath(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// keyPath appends a map key to a path: .key, or ["key"] when the key is not a plain word.
func keyPath(path, key string) string {
	if identKeyRegex.MatchString(key) {
		return joinPath(path, key)
	}
	return path + "[" + strconv.Quote(key) + "]"
}

// jsonKind names the JSON type of a value decoded with UseNumber.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case json.Number, float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}

// structFields maps the JSON names of t's fields (inline embedded structs
// flattened) to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					fields[k] = v
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}

// walk checks a generic JSON value against the Go type t and reports unknown
// fields and type mismatches with their exact paths.
func walk(v any, t reflect.Type, path string, errs *[]pathError) {
	if v == nil {
		return // null leaves the zero value, as encoding/json does
	}
	add := func(reason string) { *errs = append(*errs, pathError{path: path, reason: reason}) }
	if t == timeType {
		if s, ok := v.(string); !ok {
			add("want string (RFC 3339 time), got " + jsonKind(v))
		} else if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			add(fmt.Sprintf("invalid time %q: want RFC 3339", s))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		walk(v, t.Elem(), path, errs)
	case reflect.Interface:
		// any value is accepted
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			add("want object, got " + jsonKind(v))
			return
		}
		fields := structFields(t)
		for _, k := range sortedKeys(m) {
			ft, known := fields[k]
			if !known {
				*errs = append(*errs, pathError{path: keyPath(path, k), reason: "unknown field"})
				continue
			}
			walk(m[k], ft, keyPath(path, k), errs)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			add("want object, got " + jsonKind(v))
			return
		}
		for _, k := range sortedKeys(m) {
			walk(m[k], t.Elem(), keyPath(path, k), errs)
		}
	case reflect.Slice:
		a, ok := v.([]any)
		if !ok {
			add("want array, got " + jsonKind(v))
			return
		}
		for i, e := range a {
			walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			add("want string, got " + jsonKind(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			add("want boolean, got " + jsonKind(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		walkInt(v, t, add)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		walkUint(v, t, add)
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			add("want number, got " + jsonKind(v))
			return
		}
		if f, err := n.Float64(); err != nil || math.IsInf(f, 0) {
			add(fmt.Sprintf("number %s out of range", n))
		}
	default:
		add(fmt.Sprintf("unsupported type %s", t))
	}
}

func walkInt(v any, t reflect.Type, add func(string)) {
	n, ok := v.(json.Number)
	if !ok {
		add("want integer, got " + jsonKind(v))
		return
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		if _, ferr := strconv.ParseFloat(n.String(), 64); ferr == nil && !strings.ContainsAny(n.String(), ".eE") {
			add(fmt.Sprintf("integer %s out of range for %s", n, t.Kind()))
		} else {
			add("want integer, got " + n.String())
		}
		return
	}
	if reflect.New(t).Elem().OverflowInt(i) {
		add(fmt.Sprintf("integer %s out of range for %s", n, t.Kind()))
	}
}

func walkUint(v any, t reflect.Type, add func(string)) {
	n, ok := v.(json.Number)
	if !ok {
		add("want integer, got " + jsonKind(v))
		return
	}
	s := n.String()
	if strings.HasPrefix(s, "-") && !strings.ContainsAny(s, ".eE") {
		add("want non-negative integer, got " + s)
		return
	}
	u, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if strings.ContainsAny(s, ".eE") {
			add("want integer, got " + s)
		} else {
			add(fmt.Sprintf("integer %s out of range for %s", s, t.Kind()))
		}
		return
	}
	if reflect.New(t).Elem().OverflowUint(u) {
		add(fmt.Sprintf("integer %s out of range for %s", s, t.Kind()))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
