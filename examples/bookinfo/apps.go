package bookinfo

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Details is the details service's answer for one product.
type Details struct {
	ID        int    `json:"id"`
	Title     string `json:"title"`
	Author    string `json:"author"`
	Year      int    `json:"year"`
	Type      string `json:"type"`
	Pages     int    `json:"pages"`
	Publisher string `json:"publisher"`
	Language  string `json:"language"`
	ISBN10    string `json:"ISBN-10"`
	ISBN13    string `json:"ISBN-13"`
}

// Reviews is the reviews service's answer for one product.
type Reviews struct {
	ID string `json:"id"`
	// Version is the version of the reviews service that answered: "v1",
	// "v2" or "v3".
	Version string   `json:"version"`
	Reviews []Review `json:"reviews"`
}

// Review is one reader's review.
type Review struct {
	Reviewer string `json:"reviewer"`
	Text     string `json:"text"`
	// Rating is absent in v1.
	Rating *Rating `json:"rating,omitempty"`
}

// Rating is a review's stars, or why there are none.
type Rating struct {
	Stars int `json:"stars,omitempty"`
	// Color is "black" (v2) or "red" (v3).
	Color string `json:"color,omitempty"`
	// Error says why the ratings service could not be asked.
	Error string `json:"error,omitempty"`
}

// Ratings is the ratings service's answer: stars by reviewer.
type Ratings struct {
	ID      int            `json:"id"`
	Ratings map[string]int `json:"ratings"`
}

var reviewTexts = []Review{
	{Reviewer: "Reviewer1", Text: "Two pairs of twins, one city and a day of chaos: the farce runs like clockwork and never drags."},
	{Reviewer: "Reviewer2", Text: "Lighter than the later plays, but the mistaken identities pile up so fast that the ending lands with a grin."},
}

var starsByReviewer = map[string]int{"Reviewer1": 5, "Reviewer2": 4}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func unmarshalQuiet(b []byte, v any) bool { return json.Unmarshal(b, v) == nil }

// productID parses the {id} path value; it writes a 400 and returns false
// when it is not a number.
func productID(w http.ResponseWriter, r *http.Request) (int, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "product id must be a non-negative number, got " + strconv.Quote(r.PathValue("id"))})
		return 0, false
	}
	return id, true
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func detailsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /details/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, Details{
			ID: id, Title: "The Comedy of Errors", Author: "William Shakespeare", Year: 1595,
			Type: "paperback", Pages: 200, Publisher: "Weft Classics", Language: "English",
			ISBN10: "1234567890", ISBN13: "978-1234567897",
		})
	})
	return mux
}

func ratingsRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /ratings/{id}", func(w http.ResponseWriter, r *http.Request) {
		id, ok := productID(w, r)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, Ratings{ID: id, Ratings: starsByReviewer})
	})
	return mux
}

// reviewsApp is one version of the reviews service.
type reviewsApp struct {
	version string // v1, v2 or v3
	ratings string // base URL of ratings
	client  *http.Client
}

func (a reviewsApp) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /reviews/{id}", a.reviews)
	return mux
}

func (a reviewsApp) reviews(w http.ResponseWriter, r *http.Request) {
	id, ok := productID(w, r)
	if !ok {
		return
	}
	out := Reviews{ID: strconv.Itoa(id), Version: a.version}
	var ratings Ratings
	var ratingsErr error
	if a.version != "v1" {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var body []byte
		body, ratingsErr = get(ctx, a.client, r, a.ratings+"/ratings/"+strconv.Itoa(id))
		if ratingsErr == nil && !unmarshalQuiet(body, &ratings) {
			ratingsErr = errors.New("ratings sent a body that is not JSON")
		}
	}
	color := map[string]string{"v2": "black", "v3": "red"}[a.version]
	for _, rv := range reviewTexts {
		switch {
		case a.version == "v1":
		case ratingsErr != nil:
			rv.Rating = &Rating{Error: "ratings are unavailable right now (" + ratingsErr.Error() + ")"}
		default:
			rv.Rating = &Rating{Stars: ratings.Ratings[rv.Reviewer], Color: color}
		}
		out.Reviews = append(out.Reviews, rv)
	}
	writeJSON(w, http.StatusOK, out)
}

// productPage is the shop's front end.
type productPage struct {
	details, reviews string // base URLs
	client           *http.Client
}

func (p productPage) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = indexTmpl.Execute(w, nil)
	})
	mux.HandleFunc("GET /productpage", p.page)
	mux.HandleFunc("GET /api/v1/products/{id}/reviews", p.apiReviews)
	return mux
}

// pageData is what the product page template shows.
type pageData struct {
	Details        *Details
	DetailsError   string
	Reviews        *Reviews
	ReviewsError   string
	RequestID      string
	EndUser        string
	ReviewsVersion string
}

func (p productPage) page(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	var (
		wg                     sync.WaitGroup
		detailsBody, revBody   []byte
		detailsErr, reviewsErr error
	)
	wg.Go(func() { detailsBody, detailsErr = get(ctx, p.client, r, p.details+"/details/0") })
	wg.Go(func() { revBody, reviewsErr = get(ctx, p.client, r, p.reviews+"/reviews/0") })
	wg.Wait()

	data := pageData{RequestID: r.Header.Get("x-request-id"), EndUser: r.Header.Get("end-user")}
	if detailsErr == nil {
		var d Details
		if unmarshalQuiet(detailsBody, &d) {
			data.Details = &d
		} else {
			detailsErr = errors.New("details sent a body that is not JSON")
		}
	}
	if detailsErr != nil {
		data.DetailsError = unavailable("details", detailsErr)
	}
	if reviewsErr == nil {
		var rv Reviews
		if unmarshalQuiet(revBody, &rv) {
			data.Reviews = &rv
			data.ReviewsVersion = "reviews-" + rv.Version
		} else {
			reviewsErr = errors.New("reviews sent a body that is not JSON")
		}
	}
	if reviewsErr != nil {
		data.ReviewsError = unavailable("reviews", reviewsErr)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := pageTmpl.Execute(w, data); err != nil {
		http.Error(w, "rendering page: "+err.Error(), http.StatusInternalServerError)
	}
}

// unavailable words a failed dependency for the page:
// "reviews are unavailable right now (503: no healthy upstream)".
func unavailable(what string, err error) string {
	var uerr *upstreamError
	if errors.As(err, &uerr) {
		return what + " are unavailable right now (" + uerr.Error() + ")"
	}
	return what + " are unavailable right now (" + err.Error() + ")"
}

// apiReviews passes the reviews service's answer through, version
// included.
func (p productPage) apiReviews(w http.ResponseWriter, r *http.Request) {
	id, ok := productID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	status, body, err := getRaw(ctx, p.client, r, p.reviews+"/reviews/"+strconv.Itoa(id))
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": unavailable("reviews", err)})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var funcs = template.FuncMap{
	"stars": func(n int) string {
		n = max(0, min(n, 5))
		return strings.Repeat("★", n) + strings.Repeat("☆", 5-n)
	},
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Weft bookshop</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}</style>
</head><body>
<h1>Weft bookshop</h1>
<p>A small shop running on the Weft service mesh.</p>
<p><a href="/productpage">See the product page</a></p>
</body></html>
`))

var pageTmpl = template.Must(template.New("page").Funcs(funcs).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{with .Details}}{{.Title}}{{else}}Product{{end}} - Weft bookshop</title>
<style>
body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;color:#222;line-height:1.45}
header{display:flex;justify-content:space-between;align-items:baseline;border-bottom:1px solid #ddd}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:2rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}
blockquote{margin:0 0 1rem;padding:.5rem 1rem;border-left:3px solid #ccc;background:#fafafa}
.stars{font-size:1.2rem;letter-spacing:.1rem}
.unavailable{color:#a40;background:#fff4e5;padding:.5rem 1rem;border-radius:4px}
.reviews-version{font-family:monospace;background:#eef;padding:0 .3rem;border-radius:3px}
footer{margin-top:2rem;color:#777;font-size:.85rem}
</style></head><body>
<header><h1><a href="/" style="color:inherit;text-decoration:none">Weft bookshop</a></h1>{{with .EndUser}}<span>signed in as <b>{{.}}</b></span>{{end}}</header>
{{with .Details}}<h2>{{.Title}}</h2><p>by {{.Author}}</p>{{else}}<h2>The book</h2>{{end}}
<div class="cols">
<section><h3>Details</h3>
{{with .Details}}<dl>
<dt>Type</dt><dd>{{.Type}}</dd>
<dt>Pages</dt><dd>{{.Pages}}</dd>
<dt>Year</dt><dd>{{.Year}}</dd>
<dt>Publisher</dt><dd>{{.Publisher}}</dd>
<dt>Language</dt><dd>{{.Language}}</dd>
<dt>ISBN-10</dt><dd>{{.ISBN10}}</dd>
<dt>ISBN-13</dt><dd>{{.ISBN13}}</dd>
</dl>{{else}}<p class="unavailable">Sorry, {{.DetailsError}}.</p>{{end}}
</section>
<section><h3>Reviews {{with .ReviewsVersion}}<span class="reviews-version">{{.}}</span>{{end}}</h3>
{{with .Reviews}}{{range .Reviews}}<blockquote>
<p>{{.Text}}</p>
<small>- {{.Reviewer}}</small>
{{with .Rating}}{{if .Error}}<p class="unavailable">{{.Error}}</p>{{else}}<div class="stars" style="color:{{.Color}}" title="{{.Stars}} of 5">{{stars .Stars}}</div>{{end}}{{end}}
</blockquote>{{end}}{{else}}<p class="unavailable">Sorry, {{.ReviewsError}}.</p>{{end}}
</section>
</div>
<footer>Served through the Weft service mesh{{with .RequestID}} &middot; request id <code>{{.}}</code>{{end}}</footer>
</body></html>
`))
