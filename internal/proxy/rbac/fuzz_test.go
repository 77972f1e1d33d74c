package rbac

import (
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzTranslate feeds arbitrary RBAC protos to Translate and evaluates
// what it accepts: neither may panic, and an accepted DENY engine never
// denies a request no policy matches.
func FuzzTranslate(f *testing.F) {
	for _, cfg := range []*rbacv3.RBAC{
		tenPolicies(rbacv3.RBAC_ALLOW),
		tenPolicies(rbacv3.RBAC_DENY),
		rules(rbacv3.RBAC_LOG, map[string]*rbacv3.Policy{"m": pol(permAny(), prinMeta(metadata(valList(valStr(exact("a"))), true, "request.auth.claims", "g")))}),
		rules(rbacv3.RBAC_DENY, map[string]*rbacv3.Policy{"n": pol(notRule(permPath(prefix("/admin"))), notID(principalName(suffix("/sa/x"))))}),
	} {
		b, err := proto.Marshal(cfg)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg rbacv3.RBAC
		if proto.Unmarshal(data, &cfg) != nil {
			return
		}
		e, err := Translate(&cfg)
		if err != nil {
			return
		}
		for _, r := range []*fakeRequest{baseRequest(), with(func(r *fakeRequest) { r.tcp, r.peer = true, "" })} {
			allowed, matched, _ := e.Allowed(r)
			if e.Action() == Deny && !matched && !allowed {
				t.Fatalf("DENY engine denied a request no policy matched")
			}
		}
	})
}
