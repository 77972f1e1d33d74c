package model

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks one object's semantics: names are DNS labels, weights are
// 0..100 and sum to 100, regexes compile as RE2, durations parse, protocols
// are known, required fields are present. Errors are *FieldError joined with
// errors.Join. Warnings name fields that are accepted but not acted on yet.
func Validate(obj Object) (warnings []string, err error) {
	if obj == nil {
		return nil, &FieldError{Reason: "nil object"}
	}
	ferrs := validate(obj, &warnings)
	errs := make([]error, len(ferrs))
	for i, fe := range ferrs {
		fe.Doc = obj.Key().String()
		errs[i] = fe
	}
	return warnings, errors.Join(errs...)
}

// validator collects the errors and warnings of one object.
type validator struct {
	doc   string
	errs  []*FieldError
	warns []string
}

func (v *validator) errf(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(path, format string, args ...any) {
	v.warns = append(v.warns, v.doc+": "+path+": "+fmt.Sprintf(format, args...))
}

// notImplemented warns that a field is accepted but ignored.
func (v *validator) notImplemented(path string) { v.warnf(path, "not implemented yet, ignored") }

// validate returns the errors of obj (without Doc) and appends its warnings.
func validate(obj Object, warnings *[]string) []*FieldError {
	v := &validator{doc: obj.Key().String()}
	if _, fqdn := obj.(*ServiceProfile); fqdn { // named after its service's FQDN
		v.serviceHost("metadata.name", obj.GetObjectMeta().Name)
		v.label("metadata.namespace", obj.GetObjectMeta().NamespaceOrDefault())
	} else {
		v.meta(obj.GetObjectMeta())
	}
	switch o := obj.(type) {
	case *Mesh:
		v.mesh(&o.Spec)
	case *Workload:
		v.workload(&o.Spec)
	case *VirtualService:
		v.virtualService(&o.Spec)
	case *DestinationRule:
		v.destinationRule(&o.Spec)
	default:
		if !v.frontEnd(obj) { // the other kinds: validate_frontends.go
			v.errf("kind", "unknown kind %q", obj.GetTypeMeta().Kind)
		}
	}
	if warnings != nil {
		*warnings = append(*warnings, v.warns...)
	}
	return v.errs
}

var dnsLabelRegex = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// dnsLabel returns why s is not a DNS label (RFC 1123), or "".
func dnsLabel(s string) string {
	switch {
	case s == "":
		return "required"
	case len(s) > 63:
		return fmt.Sprintf("%q is longer than 63 characters", s)
	case !dnsLabelRegex.MatchString(s):
		return fmt.Sprintf("%q is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)", s)
	}
	return ""
}

func (v *validator) label(path, s string) {
	if r := dnsLabel(s); r != "" {
		v.errf(path, "%s", r)
	}
}

func (v *validator) meta(m ObjectMeta) {
	v.label("metadata.name", m.Name)
	if m.Namespace != "" {
		v.label("metadata.namespace", m.Namespace)
	}
}

// ParseDuration parses an Istio duration ("1.5s", "100ms", "3m"). It must not be negative.
func ParseDuration(d Duration) (time.Duration, error) {
	t, err := time.ParseDuration(string(d))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want e.g. \"1.5s\" or \"100ms\"", string(d))
	}
	if t < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", string(d))
	}
	return t, nil
}

func (v *validator) duration(path string, d Duration) {
	if d == "" {
		return
	}
	if _, err := ParseDuration(d); err != nil {
		v.errf(path, "%v", err)
	}
}

func (v *validator) port(path string, p uint32, required bool) {
	if p == 0 && !required {
		return
	}
	if p == 0 || p > 65535 {
		v.errf(path, "port %d out of range, want 1..65535", p)
	}
}

func (v *validator) hostPort(path, s string) {
	if s == "" {
		v.errf(path, "required")
		return
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		v.errf(path, "%q is not host:port", s)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.errf(path, "%q: port must be 1..65535", s)
	}
}

func (v *validator) protocol(path string, p Protocol, required bool) {
	if p == "" && !required {
		return
	}
	if !p.Valid() {
		v.errf(path, "protocol %q is not one of http, http2, grpc, tcp", string(p))
	}
}

func (v *validator) mesh(s *MeshSpec) {
	if len(s.Workloads) == 0 {
		v.errf("spec.workloads", "required")
	}
	names := map[string]int{}
	services := map[string]bool{}
	for i, w := range s.Workloads {
		services[w.Service] = true
		p := fmt.Sprintf("spec.workloads[%d]", i)
		v.label(p+".name", w.Name)
		if j, dup := names[w.Name]; dup && w.Name != "" {
			v.errf(p+".name", "duplicate workload name %q (also spec.workloads[%d])", w.Name, j)
		} else {
			names[w.Name] = i
		}
		v.label(p+".service", w.Service)
		if w.ServiceAccount != "" {
			v.label(p+".serviceAccount", w.ServiceAccount)
		}
		switch {
		case w.Demo == "" && len(w.Command) == 0:
			v.errf(p, "one of demo and command is required")
		case w.Demo != "" && len(w.Command) > 0:
			v.errf(p, "demo and command are mutually exclusive")
		case len(w.Command) > 0 && w.Command[0] == "":
			v.errf(p+".command[0]", "program must not be empty")
		}
		v.port(p+".port.port", w.Port.Port, false)
		v.protocol(p+".port.protocol", w.Port.Protocol, false)
	}
	for i, w := range s.Workloads {
		for j, u := range w.Upstreams {
			if !services[u] {
				v.errf(fmt.Sprintf("spec.workloads[%d].upstreams[%d]", i, j), "service %q is not defined by any workload", u)
			}
		}
	}
	if s.Entry != nil {
		if s.Entry.Workload == "" {
			v.errf("spec.entry.workload", "required")
		} else if _, ok := names[s.Entry.Workload]; !ok {
			v.errf("spec.entry.workload", "workload %q is not defined", s.Entry.Workload)
		}
		if s.Entry.Path != "" && !strings.HasPrefix(s.Entry.Path, "/") {
			v.errf("spec.entry.path", "%q must start with /", s.Entry.Path)
		}
	}
}

func (v *validator) workload(s *WorkloadSpec) {
	v.label("spec.service", s.Service)
	if s.ServiceAccount != "" {
		v.label("spec.serviceAccount", s.ServiceAccount)
	}
	if len(s.Ports) == 0 {
		v.errf("spec.ports", "required")
	}
	seen := map[uint32]int{}
	for i, p := range s.Ports {
		path := fmt.Sprintf("spec.ports[%d]", i)
		v.port(path+".port", p.Port, true)
		if j, dup := seen[p.Port]; dup {
			v.errf(path+".port", "duplicate port %d (also spec.ports[%d])", p.Port, j)
		} else {
			seen[p.Port] = i
		}
		v.protocol(path+".protocol", p.Protocol, true)
		v.hostPort(path+".app", p.App)
		v.hostPort(path+".inbound", p.Inbound)
	}
	for i, u := range s.Upstreams {
		path := fmt.Sprintf("spec.upstreams[%d]", i)
		v.label(path+".service", u.Service)
		v.port(path+".port", u.Port, false)
		v.hostPort(path+".local", u.Local)
	}
	if s.Admin != "" {
		v.hostPort("spec.admin", s.Admin)
	}
}
