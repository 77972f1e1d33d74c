package compile

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// chainShape describes one inbound filter chain: transport match, TLS,
// XFCC handling (HTTP), and its filters' names.
func chainShape(t *testing.T, fc *listenerv3.FilterChain) string {
	t.Helper()
	s := fc.GetFilterChainMatch().GetTransportProtocol()
	if s == "" {
		s = "-"
	}
	if fc.GetTransportSocket() != nil {
		s += " tls"
	} else {
		s += " plain"
	}
	for _, f := range fc.GetFilters() {
		s += " " + f.GetName()
		var hcm hcmv3.HttpConnectionManager
		if f.GetTypedConfig().UnmarshalTo(&hcm) == nil {
			s += "(" + hcm.GetForwardClientCertDetails().String()
			if hcm.GetSetCurrentClientCertDetails().GetUri() {
				s += "+uri"
			}
			s += ")"
		}
	}
	return s
}

// TestInboundChains checks each mTLS mode's listener: filter chains,
// transport matches, TLS, and XFCC (a plaintext chain never sets it from
// a peer).
func TestInboundChains(t *testing.T) {
	const hcm = "envoy.filters.network.http_connection_manager"
	strict := []string{"- tls " + hcm + "(SANITIZE_SET+uri)"}
	cases := []struct {
		files              []string
		workload, listener string
		inspector          bool
		chains             []string
	}{
		{nil, "backend-v1", "inbound|8080", false, strict}, // no policy: STRICT
		{[]string{"sec-peer-strict.yaml"}, "backend-v1", "inbound|8080", false, strict},
		{[]string{"sec-peer-strict.yaml"}, "backend-v1", "inbound|9090", false, strict},
		{[]string{"sec-peer.yaml"}, "backend-v1", "inbound|8080", true, []string{"tls tls " + hcm + "(SANITIZE_SET+uri)", "raw_buffer plain " + hcm + "(SANITIZE)"}},
		{[]string{"sec-peer.yaml"}, "backend-v1", "inbound|9090", false, []string{"- plain " + hcm + "(SANITIZE)"}},
		{[]string{"sec-peer.yaml"}, "legacy-v1", "inbound|9000", false, []string{"- plain " + hcm + "(SANITIZE)"}},
		{[]string{"sec-peer.yaml"}, "legacy-v1", "inbound|9001", true, []string{"tls tls " + hcm + "(SANITIZE_SET+uri)", "raw_buffer plain " + hcm + "(SANITIZE)"}},
		{[]string{"sec-peer.yaml"}, "db-0", "inbound|5432", true, []string{"tls tls envoy.filters.network.tcp_proxy", "raw_buffer plain envoy.filters.network.tcp_proxy"}},
		{[]string{"sec-peer.yaml"}, "frontend-v1", "inbound|8080", true, []string{"tls tls " + hcm + "(SANITIZE_SET+uri)", "raw_buffer plain " + hcm + "(SANITIZE)"}},
	}
	for _, tc := range cases {
		set, err := Proxy(loadInput(t, append([]string{"sec-mesh.yaml"}, tc.files...)...), tc.workload)
		if err != nil {
			t.Fatal(err)
		}
		l := set.Listeners[tc.listener]
		if l == nil {
			t.Fatalf("%s: no listener %s", tc.workload, tc.listener)
		}
		var got []string
		for _, fc := range l.GetFilterChains() {
			got = append(got, chainShape(t, fc))
		}
		if diff := cmp.Diff(tc.chains, got); diff != "" {
			t.Errorf("%s %s chains (-want +got):\n%s", tc.workload, tc.listener, diff)
		}
		hasInspector := len(l.GetListenerFilters()) == 1 && l.GetListenerFilters()[0].GetName() == "envoy.filters.listener.tls_inspector"
		if hasInspector != tc.inspector || (!tc.inspector && len(l.GetListenerFilters()) > 0) {
			t.Errorf("%s %s: listener filters %v, want tls_inspector %v", tc.workload, tc.listener, l.GetListenerFilters(), tc.inspector)
		}
	}
}

// TestSecurityConfigsValidate runs Envoy's own proto validation (PGV
// rules, e.g. a non-empty and_ids, a stat_prefix) over every resource of
// the security golden cases, typed configs included.
func TestSecurityConfigsValidate(t *testing.T) {
	for _, tc := range goldenCases {
		if !strings.HasPrefix(tc.name, "sec-") {
			continue
		}
		set, err := Proxy(loadInput(t, tc.files...), tc.workload)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []proto.Message
		for _, l := range set.Listeners {
			msgs = append(msgs, l)
		}
		for _, c := range set.Clusters {
			msgs = append(msgs, c)
		}
		for _, m := range msgs {
			if err := validateDeep(m); err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		}
	}
}

// validateDeep validates m and every message packed in an Any inside it.
func validateDeep(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	var err error
	walkMessages(m.ProtoReflect(), func(r protoreflect.Message) {
		a, ok := r.Interface().(*anypb.Any)
		if !ok || err != nil {
			return
		}
		inner, uerr := a.UnmarshalNew()
		if uerr != nil {
			err = uerr
			return
		}
		err = validateDeep(inner)
	})
	return err
}

// walkMessages calls fn for every message nested in m (not m itself).
func walkMessages(m protoreflect.Message, fn func(protoreflect.Message)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		visit := func(v protoreflect.Value) {
			fn(v.Message())
			walkMessages(v.Message(), fn)
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				visit(v.List().Get(i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				visit(mv)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			visit(v)
		}
		return true
	})
}
