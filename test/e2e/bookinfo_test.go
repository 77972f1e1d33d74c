package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/examples/demoapp"
	"github.com/trellis-mesh/trellis/internal/api"
)

const bookinfo = "examples/bookinfo/mesh.yaml"

// TestBookinfo runs the demo once and checks, in order, everything a user
// does with it. Subtests share the mesh; each leaves the config as it found it.
func TestBookinfo(t *testing.T) {
	m := startMesh(t, bookinfo)

	t.Run("status lists every workload", func(t *testing.T) {
		out, _, err := m.cli("status", "-o", "json")
		if err != nil {
			t.Fatalf("trellis status -o json: %v", err)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		if !strings.HasPrefix(st.Entry, "http://127.0.0.1:") || !strings.HasSuffix(st.Entry, "/productpage") {
			t.Errorf("entry = %q, want the productpage URL", st.Entry)
		}
		want := map[string]string{"productpage-v1": "productpage", "details-v1": "details", "reviews-v1": "reviews",
			"reviews-v2": "reviews", "reviews-v3": "reviews", "ratings-v1": "ratings"}
		if len(st.Workloads) != len(want) {
			t.Errorf("got %d workloads, want %d", len(st.Workloads), len(want))
		}
		for _, w := range st.Workloads {
			if want[w.Name] != w.Service {
				t.Errorf("workload %s: service %q, want %q", w.Name, w.Service, want[w.Name])
			}
			if w.Identity != "spiffe://cluster.local/ns/default/sa/"+w.Service {
				t.Errorf("workload %s: identity %q", w.Name, w.Identity)
			}
			if !w.Ready || w.Config.State != api.ConfigSynced || w.Config.Version == "" {
				t.Errorf("workload %s: ready=%v config=%+v", w.Name, w.Ready, w.Config)
			}
			for _, addr := range []string{w.App, w.Inbound, w.Admin} {
				if _, _, err := net.SplitHostPort(addr); err != nil {
					t.Errorf("workload %s: address %q: %v", w.Name, addr, err)
				}
			}
			if w.Labels["version"] == "" {
				t.Errorf("workload %s: no version label: %v", w.Name, w.Labels)
			}
		}
		if got := m.workload("productpage-v1").Upstreams; got["details"] == "" || got["reviews"] == "" {
			t.Errorf("productpage upstreams = %v, want details and reviews", got)
		}
		table, _, err := m.cli("status")
		if err != nil || !strings.Contains(table, "reviews-v3") || !strings.Contains(table, "SYNCED") {
			t.Errorf("trellis status table: err=%v\n%s", err, table)
		}
	})

	t.Run("entry page is assembled from every service", func(t *testing.T) {
		entry := m.status().Entry
		code, _, body, err := httpGet(entry)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET %s: %d %v", entry, code, err)
		}
		var page *demoapp.Productpage
		eventually(t, 10*time.Second, "productpage API shows details, reviews and ratings", func() (err error) {
			page, err = fetchProductPage(strings.TrimSuffix(entry, "/productpage")+"/api/productpage", true)
			return err
		})
		for _, want := range []string{page.Product.Title, page.Details.Author} {
			if !strings.Contains(body, want) {
				t.Errorf("HTML page does not show %q", want)
			}
		}
	})

	t.Run("apps see their own sidecar and the caller's identity", func(t *testing.T) {
		pp := m.workload("productpage-v1")
		w, err := getWhoami("http://" + pp.Upstreams["details"] + "/whoami")
		if err != nil {
			t.Fatal(err)
		}
		if w.Workload != "details-v1" {
			t.Errorf("answered by %q, want details-v1", w.Workload)
		}
		if host, _, _ := net.SplitHostPort(w.RemoteAddr); host != "127.0.0.1" {
			t.Errorf("app saw remote %q, want its sidecar on 127.0.0.1", w.RemoteAddr)
		}
		xfcc := strings.Join(w.Headers["X-Forwarded-Client-Cert"], ",")
		if !strings.Contains(xfcc, "URI=spiffe://cluster.local/ns/default/sa/productpage") ||
			!strings.Contains(xfcc, "By=spiffe://cluster.local/ns/default/sa/details") {
			t.Errorf("x-forwarded-client-cert = %q, want By=details URI=productpage", xfcc)
		}
		// A client-supplied XFCC is replaced, not trusted.
		code, _, body, err := httpGet("http://"+pp.Upstreams["details"]+"/whoami", "X-Forwarded-Client-Cert", "URI=spiffe://cluster.local/ns/default/sa/admin")
		if err != nil || code != 200 || strings.Contains(body, "sa/admin") {
			t.Errorf("spoofed XFCC reached the app: %d %v %s", code, err, body)
		}
	})

	t.Run("mTLS refuses plaintext, foreign CAs and impostors", func(t *testing.T) { testMTLSRefusals(t, m) })
	t.Run("90/10 split and a live change", func(t *testing.T) { testSplit(t, m) })
	t.Run("bad input is rejected and changes nothing", func(t *testing.T) { testBadInput(t, m) })
	t.Run("route to an undefined subset", func(t *testing.T) { testUndefinedSubset(t, m) })
	t.Run("order of applies does not matter", func(t *testing.T) { testApplyOrder(t, m) })
	t.Run("control plane down then back", func(t *testing.T) { testControlPlaneRestart(t, m) })
}

// fetchProductPage loads productpage's JSON; with wantRatings it insists on
// a reviews answer that carries ratings (v2 or v3).
func fetchProductPage(url string, wantRatings bool) (*demoapp.Productpage, error) {
	code, _, body, err := httpGet(url)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%d %s", code, body)
	}
	var p demoapp.Productpage
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		return nil, fmt.Errorf("%w: %s", err, body)
	}
	if len(p.Errors) > 0 {
		return nil, fmt.Errorf("upstream errors: %s", body)
	}
	if p.Details == nil || p.Details.Author == "" || p.Reviews == nil || len(p.Reviews.Reviews) == 0 {
		return nil, fmt.Errorf("incomplete page: %s", body)
	}
	if wantRatings && p.Reviews.Version == "v1" {
		return nil, fmt.Errorf("reviews v1 answered (no ratings); try again")
	}
	if wantRatings && (p.Reviews.Reviews[0].Rating == nil || p.Reviews.Reviews[0].Rating.Stars == 0) {
		return nil, fmt.Errorf("reviews %s answered without ratings: %s", p.Reviews.Version, body)
	}
	return &p, nil
}

func applyYAML(t *testing.T, m *mesh, name, doc string) (stdout, stderr string) {
	t.Helper()
	out, errOut, err := m.cli("apply", "-f", writeFile(t, name, doc))
	if err != nil {
		t.Fatalf("trellis apply %s: %v\n%s%s", name, err, out, errOut)
	}
	return out, errOut
}

func deleteConfig(t *testing.T, m *mesh, kind, name string) {
	t.Helper()
	if _, errOut, err := m.cli("delete", kind, name); err != nil {
		t.Fatalf("trellis delete %s %s: %v %s", kind, name, err, errOut)
	}
}
