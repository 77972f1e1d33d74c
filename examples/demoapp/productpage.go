package demoapp

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
)

//go:embed productpage.html.tmpl
var productpageHTML string

var productpageTemplate = template.Must(template.New("productpage").Funcs(template.FuncMap{
	"stars": func(n int) []int { return make([]int, max(0, min(n, 5))) },
	"blank": func(n int) []int { return make([]int, max(0, 5-max(0, n))) },
}).Parse(productpageHTML))

// Product is the book a product page shows.
type Product struct {
	ID          int    `json:"id"`
	Title       string `json:"title"`
	Description string `json:"description"`
}

// Productpage is what the product page shows, as GET /api/productpage
// answers it. Details or Reviews is nil when that upstream failed, and
// Errors says why; the page is still served with status 200.
type Productpage struct {
	Workload        string           `json:"workload"`
	User            string           `json:"user,omitempty"`
	Product         Product          `json:"product"`
	Details         *Details         `json:"details"`
	Reviews         *Reviews         `json:"reviews"`
	ReviewsVersion  string           `json:"reviewsVersion,omitempty"`
	ReviewsWorkload string           `json:"reviewsWorkload,omitempty"`
	Errors          []*UpstreamError `json:"errors,omitempty"`
}

// assemble calls details and reviews concurrently, through the sidecar.
func assemble(ctx context.Context, cfg config, up *upstreamClient, id int, user string, in http.Header) Productpage {
	page := Productpage{
		Workload: cfg.workload,
		User:     user,
		Product:  Product{ID: id, Title: bookTitle, Description: bookDescription},
	}
	headers := in.Clone()
	if user != "" {
		headers.Set("End-User", user)
	}
	var (
		wg                     sync.WaitGroup
		details                Details
		reviews                Reviews
		detailsErr, reviewsErr error
	)
	wg.Go(func() {
		detailsErr = up.getJSON(ctx, "details", "/details/"+strconv.Itoa(id), headers, &details)
	})
	wg.Go(func() {
		reviewsErr = up.getJSON(ctx, "reviews", "/reviews/"+strconv.Itoa(id), headers, &reviews)
	})
	wg.Wait()
	for _, err := range []error{detailsErr, reviewsErr} {
		if ue, ok := errors.AsType[*UpstreamError](err); ok {
			page.Errors = append(page.Errors, ue)
		} else if err != nil {
			page.Errors = append(page.Errors, &UpstreamError{Message: err.Error()})
		}
	}
	if detailsErr == nil {
		page.Details = &details
	}
	if reviewsErr == nil {
		page.Reviews = &reviews
		page.ReviewsVersion = reviews.Version
		page.ReviewsWorkload = reviews.Workload
	}
	return page
}

// pageRequest reads the product id (?id=, default 0) and the user (?u=, or
// the end-user header, which is what the jason route matches on).
func pageRequest(w http.ResponseWriter, r *http.Request, cfg config) (id int, user string, ok bool) {
	if s := r.URL.Query().Get("id"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, apiError{Error: "id must be a non-negative integer", Workload: cfg.workload})
			return 0, "", false
		}
		id = n
	}
	user = r.URL.Query().Get("u")
	if user == "" {
		user = r.Header.Get("End-User")
	}
	return id, user, true
}

func productpageHandler(cfg config, up *upstreamClient, logger *slog.Logger) http.Handler {
	mux := newMux(cfg)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/productpage", http.StatusFound)
	})
	mux.HandleFunc("GET /api/productpage", func(w http.ResponseWriter, r *http.Request) {
		id, user, ok := pageRequest(w, r, cfg)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, assemble(r.Context(), cfg, up, id, user, r.Header))
	})
	mux.HandleFunc("GET /productpage", func(w http.ResponseWriter, r *http.Request) {
		id, user, ok := pageRequest(w, r, cfg)
		if !ok {
			return
		}
		page := assemble(r.Context(), cfg, up, id, user, r.Header)
		var buf bytes.Buffer
		if err := productpageTemplate.Execute(&buf, page); err != nil {
			logger.Error("render product page", "err", err)
			http.Error(w, "render product page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	})
	return mux
}

func runProductpage(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	up := newUpstreamClient(cfg)
	defer up.close()
	return serveHTTP(ctx, ln, logRequests(productpageHandler(cfg, up, logger), logger), logger)
}
