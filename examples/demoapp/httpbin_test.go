package demoapp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHttpbin(t *testing.T) {
	h := newHttpbin(config{workload: "httpbin-v1", version: "v1"}).handler()
	do := func(method, target, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
		return rec
	}
	tests := []struct {
		name, method, target string
		want                 int
	}{
		{"status", "GET", "/status/418", 418},
		{"status POST", "POST", "/status/503", 503},
		{"bad status", "GET", "/status/42", 400},
		{"delay zero", "GET", "/delay/0", 200},
		{"bad delay", "GET", "/delay/99", 400},
		{"echo", "GET", "/anything/x?a=1", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(tc.method, tc.target, "")
			if rec.Code != tc.want {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.target, rec.Code, tc.want)
			}
			if got := rec.Header().Get(HeaderServedBy); got != "httpbin-v1" {
				t.Errorf("%s = %q", HeaderServedBy, got)
			}
		})
	}

	var echo HttpbinEcho
	if err := json.Unmarshal(do("POST", "/anything/p?q=v", "hi").Body.Bytes(), &echo); err != nil {
		t.Fatal(err)
	}
	if echo.Path != "/anything/p" || echo.Query["q"][0] != "v" || echo.Body != "hi" || echo.Method != "POST" {
		t.Errorf("echo = %+v", echo)
	}

	// The control API: two failures, then normal answers; control calls are not counted.
	do("POST", "/control/reset", "")
	if rec := do("POST", "/control/fail?status=503&count=2", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("control/fail: %d", rec.Code)
	}
	for i, want := range []int{503, 503, 200} {
		if got := do("GET", "/get", "").Code; got != want {
			t.Errorf("request %d: %d, want %d", i, got, want)
		}
	}
	var st HttpbinStats
	if err := json.Unmarshal(do("GET", "/control/stats", "").Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Requests != 3 || st.ByPath["/get"] != 3 {
		t.Errorf("stats = %+v, want 3 requests to /get", st)
	}
	if rec := do("POST", "/control/fail?status=9", ""); rec.Code != http.StatusBadRequest {
		t.Errorf("bad control/fail: %d", rec.Code)
	}
}
