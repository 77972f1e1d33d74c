package compile

import (
	"testing"

	"github.com/trellis-mesh/trellis/internal/model"
)

func TestFrontEndsInIndex(t *testing.T) {
	decode := func(doc string) model.Object {
		objs, err := model.Decode([]byte(doc), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return objs[0]
	}
	profile := func(svc string) string {
		return "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: " + svc + ".default.svc.cluster.local}\n" +
			"spec:\n  routes: [{name: r, condition: {method: GET}}]\n  retryBudget: {retryRatio: 0.5, minRetriesPerSecond: 1, ttl: 2s}\n"
	}
	rule := func(host, policy string) string {
		return "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " + host + "}\nspec:\n  host: " + host + "\n" + policy
	}
	in := &Input{}
	for _, d := range []string{
		"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http: [{route: [{destination: {host: a}}]}]\n",
		// a is routed by the VirtualService: its profile is shadowed, budget included.
		profile("a"),
		// b's budget joins the applied rule's policy.
		profile("b"), rule("b", "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"),
		// c's own budget wins.
		profile("c"), rule("c", "  trafficPolicy: {retryBudget: {percent: 1}}\n"),
		// d has no rule: the converted one gives its policy.
		profile("d"),
	} {
		in.Add(decode(d))
	}
	ix := NewIndex(in)
	ref := func(n string) model.ServiceRef { return model.ServiceRef{Namespace: "default", Name: n} }
	if vs := ix.virtualService(ref("a")); vs == nil || vs.Name != "a" {
		t.Errorf("a: routed by %v, want the applied VirtualService", vs)
	}
	if vs := ix.virtualService(ref("b")); vs == nil || vs.Name != "serviceprofile:b.default.svc.cluster.local" {
		t.Errorf("b: routed by %v, want its ServiceProfile", vs)
	}
	budget := func(n string) *model.RetryBudget {
		top, _ := ix.trafficPolicies(ref(n), "")
		if top == nil {
			return nil
		}
		return top.RetryBudget
	}
	if b := budget("a"); b != nil {
		t.Errorf("a: budget %+v, want none (its profile is shadowed)", b)
	}
	if b := budget("b"); b == nil || *b.Percent != 50 || b.MinRetryConcurrency != 1 || b.BudgetInterval != "2s" {
		t.Errorf("b: budget %+v, want the profile's", b)
	}
	top, _ := ix.trafficPolicies(ref("b"), "")
	if top.LoadBalancer == nil || top.LoadBalancer.Simple != "RANDOM" {
		t.Errorf("b: the applied rule's policy was lost: %+v", top)
	}
	if in.DestinationRules[0].Spec.TrafficPolicy.RetryBudget != nil {
		t.Errorf("the Input's DestinationRule was modified")
	}
	if b := budget("c"); b == nil || *b.Percent != 1 {
		t.Errorf("c: budget %+v, want the DestinationRule's own", b)
	}
	if b := budget("d"); b == nil || *b.Percent != 50 {
		t.Errorf("d: budget %+v, want the profile's", b)
	}
}
