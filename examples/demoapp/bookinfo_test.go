package demoapp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestDetails(t *testing.T) {
	srv := httptest.NewServer(detailsHandler(testConfig("details-v1", "details", "v1", nil)))
	defer srv.Close()
	var d Details
	if resp := getJSON(t, srv.URL+"/details/7", nil, &d); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if d.ID != 7 || d.Author != "William Shakespeare" || d.Workload != "details-v1" {
		t.Errorf("details = %+v", d)
	}
	var e apiError
	if resp := getJSON(t, srv.URL+"/details/abc", nil, &e); resp.StatusCode != http.StatusBadRequest || e.Error == "" {
		t.Errorf("bad id: status %d, error %q", resp.StatusCode, e.Error)
	}
}

func TestRatings(t *testing.T) {
	srv := httptest.NewServer(ratingsHandler(testConfig("ratings-v1", "ratings", "v1", nil)))
	defer srv.Close()
	var r Ratings
	if resp := getJSON(t, srv.URL+"/ratings/0", nil, &r); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if r.Ratings["Reviewer1"] != 5 || r.Ratings["Reviewer2"] != 4 || r.Workload != "ratings-v1" {
		t.Errorf("ratings = %+v", r)
	}
}

// fakeRatings stands in for the sidecar's ratings outbound port. It records
// the end-user header it received and counts calls.
type fakeRatings struct {
	calls   atomic.Int32
	endUser atomic.Value
}

func (f *fakeRatings) server(t *testing.T) *httptest.Server {
	real := ratingsHandler(testConfig("ratings-v1", "ratings", "v1", nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.endUser.Store(r.Header.Get("End-User"))
		real.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func addrOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func TestReviews(t *testing.T) {
	ratings := &fakeRatings{}
	ratingsAddr := addrOf(ratings.server(t))
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Trellis-Reason", "no_healthy_upstream")
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
	}))
	defer down.Close()

	tests := []struct {
		name, version, ratingsAddr string
		wantCalls                  int32
		wantColor                  string // "" means no rating at all
		wantError                  string // in every rating
	}{
		{name: "v1 has no ratings", version: "v1", ratingsAddr: ratingsAddr},
		{name: "v2 black stars", version: "v2", ratingsAddr: ratingsAddr, wantCalls: 1, wantColor: "black"},
		{name: "v3 red stars", version: "v3", ratingsAddr: ratingsAddr, wantCalls: 1, wantColor: "red"},
		{name: "v2 ratings down", version: "v2", ratingsAddr: addrOf(down), wantError: "x-trellis-reason: no_healthy_upstream"},
		{name: "v3 no ratings upstream", version: "v3", wantError: "TRELLIS_UPSTREAM_RATINGS is not set"},
		{name: "unversioned with ratings upstream", version: "", ratingsAddr: ratingsAddr, wantCalls: 1, wantColor: "black"},
		{name: "unversioned without upstream", version: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ratings.calls.Store(0)
			env := map[string]string{}
			if tt.ratingsAddr != "" {
				env["TRELLIS_UPSTREAM_RATINGS"] = tt.ratingsAddr
			}
			cfg := testConfig("reviews-"+tt.version, "reviews", tt.version, env)
			up := newUpstreamClient(cfg)
			defer up.close()
			srv := httptest.NewServer(reviewsHandler(cfg, up))
			defer srv.Close()

			var got Reviews
			resp := getJSON(t, srv.URL+"/reviews/0", http.Header{"End-User": {"jason"}}, &got)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got.Version != tt.version || got.Workload != cfg.workload || len(got.Reviews) != 2 {
				t.Fatalf("reviews = %+v", got)
			}
			if n := ratings.calls.Load(); n != tt.wantCalls {
				t.Errorf("ratings called %d times, want %d", n, tt.wantCalls)
			}
			if tt.wantCalls > 0 && ratings.endUser.Load() != "jason" {
				t.Errorf("end-user header not propagated to ratings: %q", ratings.endUser.Load())
			}
			for _, r := range got.Reviews {
				switch {
				case tt.wantError != "":
					if r.Rating == nil || !strings.Contains(r.Rating.Error, tt.wantError) {
						t.Errorf("%s rating = %+v, want error containing %q", r.Reviewer, r.Rating, tt.wantError)
					}
				case tt.wantColor == "":
					if r.Rating != nil {
						t.Errorf("%s rating = %+v, want none", r.Reviewer, r.Rating)
					}
				default:
					if r.Rating == nil || r.Rating.Color != tt.wantColor || r.Rating.Stars != bookRatings[r.Reviewer] {
						t.Errorf("%s rating = %+v, want %d %s stars", r.Reviewer, r.Rating, bookRatings[r.Reviewer], tt.wantColor)
					}
				}
			}
		})
	}
}

func TestUpstreamErrorMessage(t *testing.T) {
	e := &UpstreamError{Service: "reviews", Status: 503, Reason: "no_healthy_upstream", Message: "no healthy upstream"}
	want := "reviews: HTTP 503 Service Unavailable (x-trellis-reason: no_healthy_upstream): no healthy upstream"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if got := snippet([]byte(strings.Repeat("x ", 300))); len(got) > 210 {
		t.Errorf("snippet not shortened: %d bytes", len(got))
	}
}

func TestUpstreamUsesNoEnvironmentProxy(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://192.0.2.1:1")
	t.Setenv("http_proxy", "http://192.0.2.1:1")
	srv := httptest.NewServer(ratingsHandler(testConfig("ratings-v1", "ratings", "v1", nil)))
	defer srv.Close()
	up := newUpstreamClient(testConfig("x", "x", "", map[string]string{"TRELLIS_UPSTREAM_RATINGS": addrOf(srv)}))
	defer up.close()
	var r Ratings
	if err := up.getJSON(t.Context(), "ratings", "/ratings/0", http.Header{}, &r); err != nil {
		t.Fatalf("getJSON through loopback with HTTP_PROXY set: %v", err)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
