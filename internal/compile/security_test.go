package compile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/trellis-mesh/trellis/internal/model"
)

// secWorkload is a workload of ns with labels and HTTP ports given as
// "service port:app port".
func secWorkload(ns, name string, labels map[string]string, ports ...string) *model.Workload {
	w := &model.Workload{Spec: model.WorkloadSpec{Service: strings.TrimSuffix(name, "-v1"), Labels: labels}}
	w.Kind, w.APIVersion, w.Name, w.Namespace = model.KindWorkload, model.APIVersionTrellis, name, ns
	for i, p := range ports {
		var svc, app uint32
		fmt.Sscanf(p, "%d:%d", &svc, &app)
		w.Spec.Ports = append(w.Spec.Ports, model.WorkloadPort{
			Port: svc, Protocol: model.ProtocolHTTP,
			App: fmt.Sprintf("127.0.0.1:%d", app), Inbound: fmt.Sprintf("127.0.0.2:%d", 30000+i),
		})
	}
	return w
}

// peerAuthn is a PeerAuthentication; ports maps portLevelMtls keys to modes.
func peerAuthn(ns, name string, sel map[string]string, mode string, ports map[string]string) *model.PeerAuthentication {
	p := &model.PeerAuthentication{}
	p.Kind, p.APIVersion, p.Name, p.Namespace = model.KindPeerAuthentication, "security.istio.io/v1", name, ns
	if sel != nil {
		p.Spec.Selector = &model.LabelSelector{MatchLabels: sel}
	}
	if mode != "" {
		p.Spec.Mtls = &model.PeerMTLS{Mode: mode}
	}
	for k, m := range ports {
		if p.Spec.PortLevelMtls == nil {
			p.Spec.PortLevelMtls = map[string]model.PeerMTLS{}
		}
		p.Spec.PortLevelMtls[k] = model.PeerMTLS{Mode: m}
	}
	return p
}

// TestMTLSMode checks the effective mode of a workload port: workload >
// namespace > root namespace > STRICT, UNSET inheriting, port-level
// entries by service or app port, the first policy of a level winning.
func TestMTLSMode(t *testing.T) {
	app := map[string]string{"app": "api"}
	const (
		strict, permissive, disable, unset = model.MTLSStrict, model.MTLSPermissive, model.MTLSDisable, model.MTLSUnset
		root                               = model.RootNamespace
	)
	cases := []struct {
		name     string
		ns       string // the workload's namespace (default: "default")
		policies []*model.PeerAuthentication
		want     [2]string // modes of ports 8080 (app 18080) and 9090 (app 19090)
	}{
		{"no policy: STRICT", "", nil, [2]string{strict, strict}},
		{"mesh-wide", "", []*model.PeerAuthentication{peerAuthn(root, "default", nil, permissive, nil)}, [2]string{permissive, permissive}},
		{"namespace beats mesh", "", []*model.PeerAuthentication{
			peerAuthn(root, "default", nil, permissive, nil),
			peerAuthn("default", "default", nil, strict, nil),
		}, [2]string{strict, strict}},
		{"namespace UNSET inherits the mesh", "", []*model.PeerAuthentication{
			peerAuthn(root, "default", nil, disable, nil),
			peerAuthn("default", "default", nil, unset, nil),
		}, [2]string{disable, disable}},
		{"mesh UNSET inherits the default", "", []*model.PeerAuthentication{peerAuthn(root, "default", nil, unset, nil)}, [2]string{strict, strict}},
		{"workload beats namespace", "", []*model.PeerAuthentication{
			peerAuthn("default", "default", nil, permissive, nil),
			peerAuthn("default", "api", app, disable, nil),
		}, [2]string{disable, disable}},
		{"workload without mtls inherits", "", []*model.PeerAuthentication{
			peerAuthn("default", "default", nil, permissive, nil),
			peerAuthn("default", "api", app, "", nil),
		}, [2]string{permissive, permissive}},
		{"port level by service port, the rest inherits", "", []*model.PeerAuthentication{
			peerAuthn("default", "default", nil, permissive, nil),
			peerAuthn("default", "api", app, unset, map[string]string{"8080": disable}),
		}, [2]string{disable, permissive}},
		{"port level by app port", "", []*model.PeerAuthentication{
			peerAuthn("default", "api", app, strict, map[string]string{"19090": permissive}),
		}, [2]string{strict, permissive}},
		{"port level UNSET inherits the workload mode", "", []*model.PeerAuthentication{
			peerAuthn("default", "api", app, disable, map[string]string{"8080": unset}),
		}, [2]string{disable, disable}},
		{"selector not matching", "", []*model.PeerAuthentication{
			peerAuthn("default", "api", map[string]string{"app": "other"}, disable, nil),
		}, [2]string{strict, strict}},
		{"first workload policy by name wins", "", []*model.PeerAuthentication{
			peerAuthn("default", "b", app, disable, nil),
			peerAuthn("default", "a", app, permissive, nil),
		}, [2]string{permissive, permissive}},
		{"first namespace policy by name wins", "", []*model.PeerAuthentication{
			peerAuthn("default", "b", nil, disable, nil),
			peerAuthn("default", "a", nil, permissive, nil),
		}, [2]string{permissive, permissive}},
		{"root namespace selector ignored", "", []*model.PeerAuthentication{
			peerAuthn(root, "api", app, disable, nil),
		}, [2]string{strict, strict}},
		{"other namespace ignored", "", []*model.PeerAuthentication{
			peerAuthn("other", "default", nil, disable, nil),
			peerAuthn("other", "api", app, disable, nil),
		}, [2]string{strict, strict}},
		{"invalid policy ignored", "", []*model.PeerAuthentication{
			peerAuthn("default", "default", nil, "disable", nil),
		}, [2]string{strict, strict}},
		{"workload in another namespace", "prod", []*model.PeerAuthentication{
			peerAuthn("default", "default", nil, disable, nil),
			peerAuthn("prod", "default", nil, permissive, nil),
		}, [2]string{permissive, permissive}},
		{"workload in the root namespace", root, []*model.PeerAuthentication{
			peerAuthn(root, "default", nil, permissive, nil),
			peerAuthn(root, "api", app, disable, nil), // a selector in the root namespace: ignored
		}, [2]string{permissive, permissive}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ns := tc.ns
			if ns == "" {
				ns = model.DefaultNamespace
			}
			w := secWorkload(ns, "api-v1", app, "8080:18080", "9090:19090")
			ix := NewIndex(&Input{Workloads: []*model.Workload{w}, PeerAuthentications: tc.policies})
			for i, p := range w.Spec.Ports {
				if got := ix.mtlsMode(w, p); got != tc.want[i] {
					t.Errorf("port %d: mode %s, want %s", p.Port, got, tc.want[i])
				}
			}
		})
	}
}

// TestPlaintextTo checks the client side: a subset is reached in
// plaintext only when every workload serving the port is DISABLE.
func TestPlaintextTo(t *testing.T) {
	v1 := secWorkload("default", "api-v1", map[string]string{"app": "api", "version": "v1"}, "8080:18080")
	v2 := secWorkload("default", "api-v1b", map[string]string{"app": "api", "version": "v2"}, "8080:18081", "9090:19090")
	v2.Spec.Service = "api"
	in := &Input{Workloads: []*model.Workload{v1, v2}, PeerAuthentications: []*model.PeerAuthentication{
		peerAuthn("default", "v2", map[string]string{"version": "v2"}, model.MTLSDisable, map[string]string{"9090": model.MTLSPermissive}),
	}}
	ix := NewIndex(in)
	svc := model.ServiceRef{Namespace: "default", Name: "api"}
	cases := []struct {
		name   string
		labels map[string]string
		port   uint32
		want   bool
	}{
		{"every endpoint DISABLE", map[string]string{"version": "v2"}, 8080, true},
		{"mixed: mTLS", nil, 8080, false},
		{"STRICT only", map[string]string{"version": "v1"}, 8080, false},
		{"port-level PERMISSIVE", map[string]string{"version": "v2"}, 9090, false},
		{"no endpoint: mTLS", map[string]string{"version": "v3"}, 8080, false},
		{"port nobody serves: mTLS", nil, 7000, false},
	}
	for _, tc := range cases {
		if got := ix.plaintextTo(svc, tc.labels, tc.port); got != tc.want {
			t.Errorf("%s: plaintext %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSecurityPolicySelects checks which workloads a policy change
// affects (the control plane recompiles them).
func TestSecurityPolicySelects(t *testing.T) {
	api := secWorkload("default", "api-v1", map[string]string{"app": "api", "version": "v1"})
	prodAPI := secWorkload("prod", "api-v1", map[string]string{"app": "api"})
	rootAPI := secWorkload(model.RootNamespace, "api-v1", map[string]string{"app": "api"})
	authz := func(ns string, sel map[string]string) *model.AuthorizationPolicy {
		a := &model.AuthorizationPolicy{}
		a.Name, a.Namespace = "p", ns
		if sel != nil {
			a.Spec.Selector = &model.LabelSelector{MatchLabels: sel}
		}
		return a
	}
	reqAuthn := func(ns string, sel map[string]string) *model.RequestAuthentication {
		r := &model.RequestAuthentication{}
		r.Name, r.Namespace = "p", ns
		if sel != nil {
			r.Spec.Selector = &model.LabelSelector{MatchLabels: sel}
		}
		return r
	}
	root := model.RootNamespace
	cases := []struct {
		name string
		obj  model.Object
		w    *model.Workload
		want bool
	}{
		{"authz namespace-wide", authz("default", nil), api, true},
		{"authz other namespace", authz("default", nil), prodAPI, false},
		{"authz selector matches", authz("default", map[string]string{"version": "v1"}), api, true},
		{"authz selector does not match", authz("default", map[string]string{"version": "v2"}), api, false},
		{"authz empty matchLabels: namespace-wide", authz("default", map[string]string{}), api, true},
		{"authz root namespace: every namespace", authz(root, nil), prodAPI, true},
		{"authz root selector: every namespace (Istio)", authz(root, map[string]string{"app": "api"}), prodAPI, true},
		{"authz root selector not matching", authz(root, map[string]string{"app": "db"}), prodAPI, false},
		{"request authn root selector", reqAuthn(root, map[string]string{"app": "api"}), prodAPI, true},
		{"request authn other namespace", reqAuthn("prod", nil), api, false},
		{"peer authn mesh-wide", peerAuthn(root, "default", nil, model.MTLSStrict, nil), prodAPI, true},
		{"peer authn root selector ignored (Istio)", peerAuthn(root, "x", map[string]string{"app": "api"}, model.MTLSStrict, nil), prodAPI, false},
		{"peer authn root selector ignored in the root namespace too", peerAuthn(root, "x", map[string]string{"app": "api"}, model.MTLSStrict, nil), rootAPI, false},
		{"peer authn workload", peerAuthn("prod", "x", map[string]string{"app": "api"}, model.MTLSStrict, nil), prodAPI, true},
		{"peer authn other namespace", peerAuthn("prod", "x", nil, model.MTLSStrict, nil), api, false},
		{"not a security kind", api, api, false},
	}
	for _, tc := range cases {
		if got := SecurityPolicySelects(tc.obj, tc.w); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
