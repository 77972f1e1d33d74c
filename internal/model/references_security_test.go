package model

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// peerAuth is a PeerAuthentication in ns; labels nil for no selector.
func peerAuth(ns, name string, labels map[string]string) *PeerAuthentication {
	p := &PeerAuthentication{
		TypeMeta:   TypeMeta{APIVersion: IstioSecurityVersions[1], Kind: KindPeerAuthentication},
		ObjectMeta: ObjectMeta{Name: name, Namespace: ns},
		Spec:       PeerAuthenticationSpec{Mtls: &PeerMTLS{Mode: MTLSStrict}},
	}
	if labels != nil {
		p.Spec.Selector = &LabelSelector{MatchLabels: labels}
	}
	return p
}

func TestPeerAuthenticationConflicts(t *testing.T) {
	app := func(v string) map[string]string { return map[string]string{"app": v} }
	tests := []struct {
		name string
		objs []Object
		want []string
	}{
		{
			name: "mesh-wide twice",
			objs: []Object{peerAuth(RootNamespace, "z", nil), peerAuth(RootNamespace, "a", nil)},
			want: []string{"PeerAuthentication istio-system/z: spec: the mesh-wide mTLS mode (namespace istio-system, no selector) is also set by PeerAuthentication istio-system/a: the first by namespace/name wins, this one is ignored"},
		},
		{
			name: "namespace-wide twice, and an empty selector is namespace-wide",
			objs: []Object{peerAuth("foo", "b", nil), peerAuth("foo", "a", nil), peerAuth("foo", "c", map[string]string{})},
			want: []string{
				`PeerAuthentication foo/b: spec: the mTLS mode of namespace "foo" (no selector) is also set by PeerAuthentication foo/a: the first by namespace/name wins, this one is ignored`,
				`PeerAuthentication foo/c: spec: the mTLS mode of namespace "foo" (no selector) is also set by PeerAuthentication foo/a: the first by namespace/name wins, this one is ignored`,
			},
		},
		{
			name: "same selector",
			objs: []Object{
				peerAuth("foo", "x", map[string]string{"version": "v1", "app": "a"}),
				peerAuth("foo", "w", map[string]string{"app": "a", "version": "v1"}),
			},
			want: []string{`PeerAuthentication foo/x: spec.selector: the mTLS mode of the workloads of namespace "foo" selected by app=a,version=v1 is also set by PeerAuthentication foo/w: the first by namespace/name wins, this one is ignored`},
		},
		{
			name: "different levels, namespaces and selectors",
			objs: []Object{
				peerAuth(RootNamespace, "default", nil),
				peerAuth("foo", "default", nil),
				peerAuth("bar", "default", nil),
				peerAuth("foo", "a", app("a")),
				peerAuth("foo", "b", app("b")),
				peerAuth("bar", "a", app("a")),
				peerAuth("foo", "av1", map[string]string{"app": "a", "version": "v1"}),
				peerAuth(RootNamespace, "a", app("a")),
			},
		},
		{
			name: "other kinds are not PeerAuthentications",
			objs: []Object{
				peerAuth("foo", "a", nil),
				&AuthorizationPolicy{TypeMeta: TypeMeta{Kind: KindAuthorizationPolicy}, ObjectMeta: ObjectMeta{Name: "a", Namespace: "foo"}},
				&RequestAuthentication{TypeMeta: TypeMeta{Kind: KindRequestAuthentication}, ObjectMeta: ObjectMeta{Name: "a", Namespace: "foo"}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, CheckReferences(tc.objs)); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLabelSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "a", "version": "v1"}
	tests := []struct {
		sel        *LabelSelector
		want, empt bool
	}{
		{sel: nil, want: true, empt: true},
		{sel: &LabelSelector{}, want: true, empt: true},
		{sel: &LabelSelector{MatchLabels: map[string]string{"app": "a"}}, want: true},
		{sel: &LabelSelector{MatchLabels: map[string]string{"app": "a", "version": "v1"}}, want: true},
		{sel: &LabelSelector{MatchLabels: map[string]string{"app": "a", "version": "v2"}}},
		{sel: &LabelSelector{MatchLabels: map[string]string{"team": ""}}},
		{sel: &LabelSelector{MatchLabels: map[string]string{"app": "A"}}},
	}
	for i, tc := range tests {
		if got := tc.sel.Matches(labels); got != tc.want {
			t.Errorf("%d: Matches = %v, want %v", i, got, tc.want)
		}
		if got := tc.sel.Empty(); got != tc.empt {
			t.Errorf("%d: Empty = %v, want %v", i, got, tc.empt)
		}
	}
}

func TestPeerAuthenticationModeFor(t *testing.T) {
	spec := func(mode string, ports map[string]string) *PeerAuthenticationSpec {
		s := &PeerAuthenticationSpec{}
		if mode != "-" {
			s.Mtls = &PeerMTLS{Mode: mode}
		}
		if ports != nil {
			s.PortLevelMtls = map[string]PeerMTLS{}
			for k, m := range ports {
				s.PortLevelMtls[k] = PeerMTLS{Mode: m}
			}
		}
		return s
	}
	tests := []struct {
		spec *PeerAuthenticationSpec
		port uint32
		want string
	}{
		{spec("-", nil), 80, MTLSUnset},
		{spec("", nil), 80, MTLSUnset},
		{spec(MTLSStrict, nil), 80, MTLSStrict},
		{spec(MTLSStrict, map[string]string{"8080": MTLSDisable}), 8080, MTLSDisable},
		{spec(MTLSStrict, map[string]string{"8080": MTLSDisable}), 80, MTLSStrict},
		{spec(MTLSPermissive, map[string]string{"8080": MTLSUnset}), 8080, MTLSPermissive},
		{spec(MTLSPermissive, map[string]string{"8080": ""}), 8080, MTLSPermissive},
		{spec("-", map[string]string{"8080": MTLSUnset}), 8080, MTLSUnset},
		{spec(MTLSUnset, map[string]string{"9080": MTLSStrict}), 9080, MTLSStrict},
	}
	for i, tc := range tests {
		if got := tc.spec.ModeFor(tc.port); got != tc.want {
			t.Errorf("%d: ModeFor(%d) = %q, want %q (%s)", i, tc.port, got, tc.want, fmt.Sprint(tc.spec.PortLevelMtls))
		}
	}
}
