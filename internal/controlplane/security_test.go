package controlplane

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/trellis-mesh/trellis/internal/api"
	"github.com/trellis-mesh/trellis/internal/model"
	"github.com/trellis-mesh/trellis/internal/store"
	"github.com/trellis-mesh/trellis/internal/xds/resources"
)

// TestSecurityMarks checks which proxies and services a security policy
// change marks: the workloads it selects (root-namespace policies across
// namespaces), and for a PeerAuthentication their services too, whose
// callers' clusters may switch between mTLS and plaintext.
func TestSecurityMarks(t *testing.T) {
	workloads := []struct{ ns, name, svc, app, version string }{
		{"default", "api-v1", "api", "api", "v1"},
		{"default", "api-v2", "api", "api", "v2"},
		{"default", "web-v1", "web", "web", "v1"},
		{"prod", "prod-api-v1", "api", "api", "v1"},
		{model.RootNamespace, "ctl-v1", "ctl", "api", "v1"},
	}
	m := newMeshModel(quietLogger())
	rev := uint64(0)
	put := func(cs *changeSet, kind, ns, name string, obj any) {
		t.Helper()
		data, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		rev++
		m.apply(store.Event{Type: store.EventPut, Record: store.Record{Kind: kind, Namespace: ns, Name: name, Revision: rev, Data: data}}, cs)
	}
	for _, w := range workloads {
		wl := &model.Workload{Spec: model.WorkloadSpec{Service: w.svc, Labels: map[string]string{"app": w.app, "version": w.version},
			Ports: []model.WorkloadPort{{Port: 80, Protocol: model.ProtocolHTTP, App: "127.0.0.1:8080", Inbound: "127.0.0.1:15006"}}}}
		wl.Kind, wl.APIVersion, wl.Name, wl.Namespace = model.KindWorkload, model.APIVersionTrellis, w.name, w.ns
		put(newChangeSet(), model.KindWorkload, w.ns, w.name, wl)
	}
	policy := func(kind, ns string, selector map[string]string) map[string]any {
		spec := map[string]any{}
		if selector != nil {
			spec["selector"] = map[string]any{"matchLabels": selector}
		}
		switch kind {
		case model.KindPeerAuthentication:
			spec["mtls"] = map[string]any{"mode": "DISABLE"}
		case model.KindAuthorizationPolicy:
			spec["rules"] = []any{map[string]any{}}
		}
		return map[string]any{"apiVersion": "security.istio.io/v1", "kind": kind, "metadata": map[string]any{"name": "p", "namespace": ns}, "spec": spec}
	}
	api := map[string]string{"app": "api"}
	cases := []struct {
		name     string
		kind, ns string
		selector map[string]string
		proxies  []string
		services []string
	}{
		{"authz selector", model.KindAuthorizationPolicy, "default", api, []string{"api-v1", "api-v2"}, nil},
		{"authz namespace-wide", model.KindAuthorizationPolicy, "default", nil, []string{"api-v1", "api-v2", "web-v1"}, nil},
		{"authz root selector: every namespace", model.KindAuthorizationPolicy, model.RootNamespace, api, []string{"api-v1", "api-v2", "ctl-v1", "prod-api-v1"}, nil},
		{"request authn other namespace", model.KindRequestAuthentication, "prod", nil, []string{"prod-api-v1"}, nil},
		{"request authn by version", model.KindRequestAuthentication, "default", map[string]string{"version": "v1"}, []string{"api-v1", "web-v1"}, nil},
		{"peer authn workload: and its service's callers", model.KindPeerAuthentication, "default", map[string]string{"version": "v2"},
			[]string{"api-v2"}, []string{"default/api"}},
		{"peer authn mesh-wide", model.KindPeerAuthentication, model.RootNamespace, nil,
			[]string{"api-v1", "api-v2", "ctl-v1", "prod-api-v1", "web-v1"}, []string{"default/api", "default/web", "istio-system/ctl", "prod/api"}},
		{"peer authn root selector: ignored", model.KindPeerAuthentication, model.RootNamespace, api, nil, nil},
	}
	marks := func(cs *changeSet) (proxies, services []string) {
		for p := range cs.proxies {
			proxies = append(proxies, p)
		}
		for s := range cs.services {
			services = append(services, s.Namespace+"/"+s.Name)
		}
		sort.Strings(proxies)
		sort.Strings(services)
		return proxies, services
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, cs *changeSet) {
				t.Helper()
				proxies, services := marks(cs)
				if diff := cmp.Diff(tc.proxies, proxies); diff != "" {
					t.Errorf("%s: proxies (-want +got):\n%s", what, diff)
				}
				if diff := cmp.Diff(tc.services, services); diff != "" {
					t.Errorf("%s: services (-want +got):\n%s", what, diff)
				}
			}
			cs := newChangeSet()
			put(cs, tc.kind, tc.ns, "p", policy(tc.kind, tc.ns, tc.selector))
			check("apply", cs)
			cs = newChangeSet()
			rev++
			m.apply(store.Event{Type: store.EventDelete, Record: store.Record{Kind: tc.kind, Namespace: tc.ns, Name: "p", Revision: rev}}, cs)
			check("delete", cs)
		})
	}
	// A changed selector marks what the policy selected and what it selects.
	cs := newChangeSet()
	put(cs, model.KindAuthorizationPolicy, "default", "moving", policy(model.KindAuthorizationPolicy, "default", map[string]string{"app": "web"}))
	cs = newChangeSet()
	put(cs, model.KindAuthorizationPolicy, "default", "moving", policy(model.KindAuthorizationPolicy, "default", map[string]string{"version": "v2"}))
	if proxies, _ := marks(cs); !cmp.Equal(proxies, []string{"api-v2", "web-v1"}) {
		t.Errorf("selector change: proxies %v, want [api-v2 web-v1]", proxies)
	}
}

// jwksForTest is a valid JSON Web Key Set (an ES256 public key).
const jwksForTest = `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":"SUntrafPDjQiwRSHfU0tH8wrFe8dZb7KDFD102k5p60","y":"ZDU7uVhddNgS_jqJqrQ7UYeAnJOdUAmFC2y_VlKfvfs"}]}`

// setShape summarizes a proxy's inbound|80 listener and its first outbound
// cluster: "<http filters, …> <inbound tls|plain> <cluster tls|plain>".
func setShape(set *resources.Set) string {
	l := set.Listeners["inbound|80"]
	if l == nil || len(l.GetFilterChains()) == 0 || len(l.GetFilterChains()[0].GetFilters()) == 0 {
		return ""
	}
	fc := l.GetFilterChains()[0]
	var hcm hcmv3.HttpConnectionManager
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		return ""
	}
	s := ""
	for _, f := range hcm.GetHttpFilters() {
		s += f.GetName() + ","
	}
	tls := func(present bool) string {
		if present {
			return " tls"
		}
		return " plain"
	}
	s += tls(fc.GetTransportSocket() != nil)
	for _, name := range resources.SortedKeys(set.Clusters) {
		if strings.HasPrefix(name, "outbound|") {
			return s + tls(set.Clusters[name].GetTransportSocket() != nil)
		}
	}
	return s + " no-upstream"
}

// TestSecurityRecompile checks, through the real reconcile loop and xDS
// server, that applying and deleting security policies recompiles and
// pushes to the proxies they shape, and to nothing else.
func TestSecurityRecompile(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const services = 8
	m := newMeshSim(t, ctx, services, 2)
	log := &compileLog{names: map[string]bool{}}
	m.cp.compiledHook = log.hook
	m.start(t, ctx, services)
	m.settle(t)
	log.take()
	admin := api.NewClient(m.cp.AdminURL(), "")
	all := m.clientList() // workload 0 of each service (label version: v0); each calls the hub
	apply := func(doc string) func() error {
		return func() error { _, err := admin.Apply(ctx, []byte(doc), "test", false); return err }
	}
	del := func(kind, name string) func() error {
		return func() error { return admin.Delete(ctx, kind, model.DefaultNamespace, name) }
	}
	const router = "envoy.filters.http.router,"
	cases := []struct {
		name     string
		change   func() error
		affected []*simClient // must reach want, and are the only ones pushed
		compiled []*simClient // recompiled, when more than affected
		want     string       // setShape of the affected proxies
	}{
		{"AuthorizationPolicy selecting no connected proxy", apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: v1-only}
spec:
  selector: {matchLabels: {version: v1}}
  rules: [{}]
`), nil, nil, ""},
		{"AuthorizationPolicy namespace-wide", apply(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all}
spec:
  rules: [{}]
`), all, nil, "trellis.rbac.allow," + router + " tls tls"},
		{"RequestAuthentication namespace-wide", apply(`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules:
  - issuer: https://issuer.example
    jwks: '` + jwksForTest + `'
`), all, nil, "trellis.jwt,trellis.rbac.allow," + router + " tls tls"},
		{"PeerAuthentication DISABLE on the unconnected v1 workloads: callers recompiled, clusters stay mTLS (mixed)", apply(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: v1-plain}
spec:
  selector: {matchLabels: {version: v1}}
  mtls: {mode: DISABLE}
`), nil, all, ""},
		{"PeerAuthentication namespace-wide DISABLE", apply(`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default}
spec:
  mtls: {mode: DISABLE}
`), all, nil, "trellis.jwt,trellis.rbac.allow," + router + " plain plain"},
		{"PeerAuthentication delete", del(model.KindPeerAuthentication, "default"), all, nil,
			"trellis.jwt,trellis.rbac.allow," + router + " tls tls"},
		{"RequestAuthentication delete", del(model.KindRequestAuthentication, "jwt"), all, nil,
			"trellis.rbac.allow," + router + " tls tls"},
		{"AuthorizationPolicy delete", del(model.KindAuthorizationPolicy, "allow-all"), all, nil, router + " tls tls"},
	}
	for _, tc := range cases {
		match := func(s *resources.Set) bool { return setShape(s) == tc.want }
		r := m.measure(t, tc.affected, match, tc.change, 10*time.Second, 300*time.Millisecond)
		if len(r.missing) > 0 {
			t.Errorf("%s: never reached %v", tc.name, r.missing)
		}
		compiled := tc.compiled
		if compiled == nil {
			compiled = tc.affected
		}
		want := clientNames(compiled)
		if diff := cmp.Diff(want, log.take(), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: compiled proxies (-want +got):\n%s", tc.name, diff)
		}
		if r.pushed != len(tc.affected) {
			t.Errorf("%s: %d proxies got a push, want %d", tc.name, r.pushed, len(tc.affected))
		}
	}
}
