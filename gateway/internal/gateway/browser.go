package gateway

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// Protections against other web sites driving a browser at the gateway.
//
// CSRF: a page on any origin may make a browser send a POST with a text/plain, urlencoded or multipart
// body (or none) without asking the gateway first. grpc-gateway decodes any body as JSON, so such a POST
// to /v1/models:unload would work. A /v1 request that could carry a body must therefore say
// Content-Type: application/json, which a browser sends cross-origin only after a CORS preflight that the
// gateway answers only for the origins listed in --cors_origins. The original form route POST /segment
// stays as the reference app had it (forms are what it takes).
//
// CORS: none unless --cors_origins lists the request's Origin exactly.

// corsAllowMethods, corsAllowHeaders: what a listed origin's scripts may use.
const (
	corsAllowMethods = "GET, HEAD, POST, OPTIONS"
	corsAllowHeaders = "Authorization, Content-Type, X-Request-Id"
	corsMaxAge       = "600"
)

// ParseCORSOrigins reads --cors_origins: comma-separated exact origins ("https://app.example.com",
// "http://localhost:3000"). "*" and "null" are refused: an allow-list means naming the sites.
func ParseCORSOrigins(list string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(o, "?") {
			return nil, fmt.Errorf("CORS origin %q is not an origin like https://app.example.com[:port]", o)
		}
		// Browsers send the serialised origin: lower-case scheme and host, no trailing slash.
		norm := strings.ToLower(u.Scheme + "://" + u.Host)
		if !slices.Contains(out, norm) {
			out = append(out, norm)
		}
	}
	return out, nil
}

// needsJSONBody: any POST (a browser sends one cross-origin without asking, with or without a body)
// and any request that has a body.
func needsJSONBody(r *http.Request) bool {
	return r.Method == http.MethodPost || r.ContentLength != 0 || len(r.TransferEncoding) > 0
}

// onV1Route runs once a generated /v1 route matched (unknown paths and methods stay 404/405): it records
// the route pattern for the metrics and the access log, and answers 415 for a body not declared JSON.
func (s *Server) onV1Route(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if pattern, ok := runtime.HTTPPattern(r.Context()); ok {
			// The template ("/v1/models:load"): the /v1 routes capture no path variables.
			setRoute(r.Context(), pattern.String())
		}
		if needsJSONBody(r) {
			if err := checkJSONContentType(r); err != nil {
				s.writeErr(w, r, err)
				return
			}
		}
		next(w, r, params)
	}
}

// checkJSONContentType: the media type must be application/json (parameters such as charset allowed).
func checkJSONContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return &httpError{code: http.StatusUnsupportedMediaType,
			detail: "Missing Content-Type: /v1 routes take a JSON body (Content-Type: application/json)."}
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return &httpError{code: http.StatusUnsupportedMediaType,
			detail: "Invalid Content-Type: /v1 routes take a JSON body (Content-Type: application/json)."}
	}
	if mediaType != "application/json" {
		return &httpError{code: http.StatusUnsupportedMediaType,
			detail: "Unsupported Content-Type " + mediaType + ": /v1 routes take a JSON body (Content-Type: application/json)."}
	}
	return nil
}

// corsAllowed: the request's Origin is one of the configured ones.
func (s *Server) corsAllowed(origin string) bool {
	return origin != "" && slices.Contains(s.cfg.CORSOrigins, origin)
}

// withCORS adds the CORS headers for listed origins and answers their preflights (204). Unlisted
// origins get no CORS header at all, so the browser keeps their scripts out; their preflights fall
// through to the routes (405 like any OPTIONS).
func (s *Server) withCORS(next http.Handler) http.Handler {
	if len(s.cfg.CORSOrigins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// The answer depends on Origin whenever CORS is on: caches must keep one copy per origin.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if !s.corsAllowed(origin) {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			setRoute(r.Context(), "preflight")
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "X-Request-Id")
		next.ServeHTTP(w, r)
	})
}
