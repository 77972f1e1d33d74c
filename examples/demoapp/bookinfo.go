package demoapp

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
)

// The bookinfo data: one book, as in Istio's sample. Any product id answers
// with the same book under that id.
const (
	bookTitle       = "The Comedy of Errors"
	bookDescription = "Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays. " +
		"It is his shortest and one of his most farcical comedies, with a major part of the humour " +
		"coming from slapstick and mistaken identity, in addition to puns and word play."
)

// Details is the answer of the details app.
type Details struct {
	ID        int    `json:"id"`
	Author    string `json:"author"`
	Year      int    `json:"year"`
	Type      string `json:"type"`
	Pages     int    `json:"pages"`
	Publisher string `json:"publisher"`
	Language  string `json:"language"`
	ISBN10    string `json:"ISBN-10"`
	ISBN13    string `json:"ISBN-13"`
	Workload  string `json:"workload"`
}

// Ratings is the answer of the ratings app: stars by reviewer.
type Ratings struct {
	ID       int            `json:"id"`
	Ratings  map[string]int `json:"ratings"`
	Workload string         `json:"workload"`
}

// Reviews is the answer of the reviews app. Version and Workload name the
// instance that answered, so a caller can see which subset served it.
type Reviews struct {
	ID       int      `json:"id"`
	Workload string   `json:"workload"`
	Version  string   `json:"version"`
	Reviews  []Review `json:"reviews"`
}

// Review is one review. Rating is nil for reviews v1.
type Review struct {
	Reviewer string  `json:"reviewer"`
	Text     string  `json:"text"`
	Rating   *Rating `json:"rating,omitempty"`
}

// Rating is the stars of a review, or the error that kept them away.
type Rating struct {
	Stars int    `json:"stars,omitempty"`
	Color string `json:"color,omitempty"`
	Error string `json:"error,omitempty"`
}

var bookReviews = []Review{
	{Reviewer: "Reviewer1", Text: "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"},
	{Reviewer: "Reviewer2", Text: "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare."},
}

var bookRatings = map[string]int{"Reviewer1": 5, "Reviewer2": 4}

// productID parses the {id} path value; it answers 400 and false when bad.
func productID(w http.ResponseWriter, r *http.Request, cfg config) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "product id must be a non-negative integer", Workload: cfg.workload})
		return 0, false
	}
	return id, true
}

func detailsHandler(cfg config) http.Handler {
	mux := newMux(cfg)
	mux.HandleFunc("GET /details/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r, cfg)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, Details{
			ID: id, Author: "William Shakespeare", Year: 1595, Type: "paperback", Pages: 200,
			Publisher: "PublisherA", Language: "English", ISBN10: "1234567890", ISBN13: "123-1234567890",
			Workload: cfg.workload,
		})
	})
	return mux
}

func runDetails(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	return serveHTTP(ctx, ln, logRequests(detailsHandler(cfg), logger), logger)
}

func ratingsHandler(cfg config) http.Handler {
	mux := newMux(cfg)
	mux.HandleFunc("GET /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r, cfg)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, Ratings{ID: id, Ratings: bookRatings, Workload: cfg.workload})
	})
	return mux
}

func runRatings(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	return serveHTTP(ctx, ln, logRequests(ratingsHandler(cfg), logger), logger)
}

// reviewsStyle decides from the version label whether reviews calls ratings
// and in which colour it draws the stars: v1 no ratings, v2 black, v3 red.
// Another (or no) version calls ratings, in black, when it has the upstream.
func reviewsStyle(cfg config) (withRatings bool, color string) {
	switch cfg.version {
	case "v1":
		return false, ""
	case "v2":
		return true, "black"
	case "v3":
		return true, "red"
	}
	_, err := cfg.upstream("ratings")
	return err == nil, "black"
}

func reviewsHandler(cfg config, up *upstreamClient) http.Handler {
	withRatings, color := reviewsStyle(cfg)
	mux := newMux(cfg)
	mux.HandleFunc("GET /reviews/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r, cfg)
		if !ok {
			return
		}
		out := Reviews{ID: id, Workload: cfg.workload, Version: cfg.version}
		out.Reviews = make([]Review, len(bookReviews))
		copy(out.Reviews, bookReviews)
		if withRatings {
			var ratings Ratings
			err := up.getJSON(r.Context(), "ratings", "/ratings/"+strconv.Itoa(id), r.Header, &ratings)
			for i := range out.Reviews {
				rating := &Rating{Color: color}
				if err != nil {
					rating = &Rating{Error: "Ratings service is currently unavailable: " + err.Error()}
				} else {
					rating.Stars = ratings.Ratings[out.Reviews[i].Reviewer]
				}
				out.Reviews[i].Rating = rating
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

func runReviews(ctx context.Context, ln net.Listener, cfg config, logger *slog.Logger) error {
	up := newUpstreamClient(cfg)
	defer up.close()
	return serveHTTP(ctx, ln, logRequests(reviewsHandler(cfg, up), logger), logger)
}
