package demoapp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// bookinfoUpstreams starts details, reviews (of version) and ratings on
// loopback, wired the way their sidecars would be, and returns the
// productpage environment.
func bookinfoUpstreams(t *testing.T, version string) map[string]string {
	t.Helper()
	details := httptest.NewServer(detailsHandler(testConfig("details-v1", "details", "v1", nil)))
	t.Cleanup(details.Close)
	ratings := httptest.NewServer(ratingsHandler(testConfig("ratings-v1", "ratings", "v1", nil)))
	t.Cleanup(ratings.Close)
	revCfg := testConfig("reviews-"+version, "reviews", version, map[string]string{"TRELLIS_UPSTREAM_RATINGS": addrOf(ratings)})
	up := newUpstreamClient(revCfg)
	t.Cleanup(up.close)
	reviews := httptest.NewServer(reviewsHandler(revCfg, up))
	t.Cleanup(reviews.Close)
	return map[string]string{
		"TRELLIS_UPSTREAM_DETAILS": addrOf(details),
		"TRELLIS_UPSTREAM_REVIEWS": addrOf(reviews),
	}
}

func productpageServer(t *testing.T, env map[string]string) *httptest.Server {
	t.Helper()
	cfg := testConfig("productpage-v1", "productpage", "v1", env)
	up := newUpstreamClient(cfg)
	t.Cleanup(up.close)
	srv := httptest.NewServer(productpageHandler(cfg, up, testLogger(t)))
	t.Cleanup(srv.Close)
	return srv
}

func TestProductpageJSON(t *testing.T) {
	srv := productpageServer(t, bookinfoUpstreams(t, "v3"))
	var page Productpage
	if resp := getJSON(t, srv.URL+"/api/productpage?u=jason", nil, &page); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if len(page.Errors) != 0 {
		t.Fatalf("errors: %+v", page.Errors)
	}
	if page.Product.Title != bookTitle || page.Details == nil || page.Details.Workload != "details-v1" {
		t.Errorf("page = %+v", page)
	}
	if page.ReviewsVersion != "v3" || page.ReviewsWorkload != "reviews-v3" || page.User != "jason" {
		t.Errorf("reviews answered by %q/%q, user %q", page.ReviewsWorkload, page.ReviewsVersion, page.User)
	}
	if page.Reviews == nil || page.Reviews.Reviews[0].Rating == nil || page.Reviews.Reviews[0].Rating.Color != "red" {
		t.Errorf("reviews = %+v", page.Reviews)
	}
}

func TestProductpageHTML(t *testing.T) {
	srv := productpageServer(t, bookinfoUpstreams(t, "v2"))
	resp, err := http.Get(srv.URL + "/productpage")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		bookTitle,
		"William Shakespeare",
		"Reviewer1",
		`data-stars="5" data-color="black"`,
		"★★★★★",
		"★★★★☆",
		"reviews answered by reviews-v2 (version v2)",
		"served by productpage-v1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, `class="error"`) {
		t.Errorf("page shows an error box with every upstream up:\n%s", body)
	}
}

// TestProductpageUpstreamFails checks that the page renders, with status
// 200 and a visible error box, when reviews answers 503 and details has no
// upstream address at all.
func TestProductpageUpstreamFails(t *testing.T) {
	reviews := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Trellis-Reason", "no_healthy_upstream")
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
	}))
	defer reviews.Close()
	srv := productpageServer(t, map[string]string{"TRELLIS_UPSTREAM_REVIEWS": addrOf(reviews)})

	resp, err := http.Get(srv.URL + "/productpage")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200 with error boxes", resp.StatusCode)
	}
	for _, want := range []string{
		bookTitle,
		`id="error-reviews"`,
		"Error fetching reviews: reviews: HTTP 503 Service Unavailable (x-trellis-reason: no_healthy_upstream)",
		`id="error-details"`,
		"TRELLIS_UPSTREAM_DETAILS is not set",
		"product reviews are currently unavailable",
		"product details are currently unavailable",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}

	var page Productpage
	getJSON(t, srv.URL+"/api/productpage", nil, &page)
	if page.Details != nil || page.Reviews != nil || len(page.Errors) != 2 {
		t.Fatalf("page = %+v", page)
	}
	byService := map[string]*UpstreamError{}
	for _, e := range page.Errors {
		byService[e.Service] = e
	}
	if e := byService["reviews"]; e == nil || e.Status != 503 || e.Reason != "no_healthy_upstream" {
		t.Errorf("reviews error = %+v", e)
	}
	if e := byService["details"]; e == nil || e.Status != 0 {
		t.Errorf("details error = %+v", e)
	}
}

func TestProductpageUpstreamUnreachable(t *testing.T) {
	env := bookinfoUpstreams(t, "v1")
	dead := httptest.NewServer(http.NotFoundHandler())
	env["TRELLIS_UPSTREAM_DETAILS"] = addrOf(dead)
	dead.Close() // nothing listens there any more
	srv := productpageServer(t, env)
	var page Productpage
	getJSON(t, srv.URL+"/api/productpage", nil, &page)
	if len(page.Errors) != 1 || page.Errors[0].Service != "details" || page.Reviews == nil || page.ReviewsVersion != "v1" {
		t.Fatalf("page = %+v, errors %+v", page, page.Errors)
	}
}

func TestProductpageRedirectAndBadID(t *testing.T) {
	srv := productpageServer(t, bookinfoUpstreams(t, "v1"))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/productpage" {
		t.Errorf("GET / = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var e apiError
	if resp := getJSON(t, srv.URL+"/api/productpage?id=-1", nil, &e); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("id=-1: status %d", resp.StatusCode)
	}
}
