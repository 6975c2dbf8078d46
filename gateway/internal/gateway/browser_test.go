package gateway

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// A web page can make a browser POST text/plain, urlencoded or multipart bodies (or none) to any site
// without a preflight. Before, grpc-gateway decoded any of them as JSON, so a page could unload the
// serving model from a visitor's browser. Now /v1 takes only application/json (415 otherwise, and the
// server is not called); the form route keeps taking forms.
func TestV1BodiesMustBeJSON(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	body := `{"model_id": "tiny"}`
	cases := []struct {
		ct, body, detail string
	}{
		{"text/plain", body, "Unsupported Content-Type text/plain: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"text/plain;charset=UTF-8", body, "Unsupported Content-Type text/plain: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"application/x-www-form-urlencoded", body, "Unsupported Content-Type application/x-www-form-urlencoded: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"multipart/form-data; boundary=x", "--x\r\n\r\n" + body + "\r\n--x--\r\n", "Unsupported Content-Type multipart/form-data: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"", body, "Missing Content-Type: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"", "", "Missing Content-Type: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"application/json-patch+json", body, "Unsupported Content-Type application/json-patch+json: /v1 routes take a JSON body (Content-Type: application/json)."},
		{"application/json; =x", body, "Invalid Content-Type: /v1 routes take a JSON body (Content-Type: application/json)."},
	}
	for _, c := range cases {
		for _, path := range []string{"/v1/models:unload", "/v1/models:load", "/v1/segment"} {
			r := e.call("POST", path, c.ct, c.body, "")
			if r.code != 415 || (c.detail != "" && string(r.body) != errJSON(c.detail)) {
				t.Errorf("%s %q: %d %s", path, c.ct, r.code, r.body)
			}
		}
	}
	e.fake.mu.Lock()
	called := e.fake.lastReq != nil
	e.fake.mu.Unlock()
	if called {
		t.Fatal("the server was called for a refused body")
	}
	// A GET with a body must say JSON too; without one it needs no Content-Type.
	if r := e.call("GET", "/v1/models", "text/plain", "x", ""); r.code != 415 {
		t.Errorf("GET with a text body: %d", r.code)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON"} {
		if r := e.call("POST", "/v1/segment", ct, `{"prompt": "p", "image_url": "http://h/i"}`, ""); r.code != 200 {
			t.Errorf("%q: %d %s", ct, r.code, r.body)
		}
	}
	if r := e.call("GET", "/v1/models", "", "", ""); r.code != 200 {
		t.Errorf("GET /v1/models: %d", r.code)
	}
	// Unknown paths and methods keep their answers; the 415 is counted under its route.
	if r := e.call("POST", "/v1/nope", "text/plain", "x", ""); r.code != 404 {
		t.Errorf("unknown path: %d", r.code)
	}
	m := e.scrape()
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/v1/models:unload", "method": "POST", "code": "415"}, float64(len(cases)))
	// The original form route is unchanged.
	if r := e.call("POST", "/segment", "application/x-www-form-urlencoded", "prompt=p&image_url=http://h/i", ""); r.code != 200 {
		t.Errorf("form route: %d %s", r.code, r.body)
	}
}

func corsHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out = append(out, k)
		}
	}
	return out
}

func (e *env) withOrigin(method, path, origin string, extra map[string]string) result {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, nil)
	req.Header.Set("Origin", origin)
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

var preflight = map[string]string{"Access-Control-Request-Method": "POST",
	"Access-Control-Request-Headers": "authorization, content-type"}

// Without --cors_origins no response carries CORS headers, preflights included (the browser then keeps
// every other origin's scripts from reading answers or sending JSON).
func TestNoCORSByDefault(t *testing.T) {
	e := newEnv(t, nil)
	for _, r := range []result{
		e.withOrigin("GET", "/v1/models", "https://evil.example", nil),
		e.withOrigin("OPTIONS", "/v1/models:unload", "https://evil.example", preflight),
	} {
		if h := corsHeaders(r.header); len(h) != 0 {
			t.Errorf("CORS headers without --cors_origins: %v", h)
		}
	}
}

// With --cors_origins only the listed origins get CORS headers and a preflight answer.
func TestCORSAllowList(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CORSOrigins = []string{"https://App.Example.com", "http://localhost:3000"} })
	ok := "https://app.example.com"
	r := e.withOrigin("OPTIONS", "/v1/models:unload", ok, preflight)
	if r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != ok ||
		r.header.Get("Access-Control-Max-Age") != "600" ||
		!slices.Contains(r.header.Values("Vary"), "Origin") || len(r.body) != 0 {
		t.Fatalf("preflight: %d %v %q", r.code, r.header, r.body)
	}
	methods := r.header.Get("Access-Control-Allow-Methods")
	allowed := strings.ToLower(r.header.Get("Access-Control-Allow-Headers"))
	for _, want := range []string{"GET", "POST"} {
		if !strings.Contains(methods, want) {
			t.Errorf("Allow-Methods %q lacks %s", methods, want)
		}
	}
	for _, want := range []string{"authorization", "content-type", "x-request-id"} {
		if !strings.Contains(allowed, want) {
			t.Errorf("Allow-Headers %q lacks %s", allowed, want)
		}
	}
	if r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Error("credentials (cookies) allowed: the gateway takes keys in a header, not cookies")
	}
	// The actual request from a listed origin: the origin echoed, X-Request-Id readable.
	r = e.withOrigin("GET", "/v1/models", "http://localhost:3000", nil)
	if r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" ||
		!strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Request-Id") ||
		!slices.Contains(r.header.Values("Vary"), "Origin") {
		t.Errorf("listed GET: %d %v", r.code, r.header)
	}
	// Errors carry the header too, so the page can read them.
	if r = e.withOrigin("GET", "/nope", ok, nil); r.code != 404 || r.header.Get("Access-Control-Allow-Origin") != ok {
		t.Errorf("listed 404: %d %v", r.code, r.header)
	}
	// Unlisted origins, near misses included: no CORS header at all, the preflight is not answered.
	for _, bad := range []string{"https://evil.example", "https://app.example.com.evil.example", "http://app.example.com",
		"https://app.example.com:8443", "null", "https://APP.example.com"} {
		for _, r := range []result{e.withOrigin("OPTIONS", "/v1/models:unload", bad, preflight), e.withOrigin("GET", "/v1/models", bad, nil)} {
			if h := corsHeaders(r.header); len(h) != 0 {
				t.Errorf("%s: CORS headers %v", bad, h)
			}
			if r.code == 204 {
				t.Errorf("%s: preflight answered", bad)
			}
		}
	}
	// OPTIONS without Access-Control-Request-Method is no preflight.
	if r = e.withOrigin("OPTIONS", "/v1/models", ok, nil); r.code == 204 {
		t.Errorf("plain OPTIONS answered as a preflight")
	}
}

func TestParseCORSOrigins(t *testing.T) {
	got, err := ParseCORSOrigins(" https://A.example , http://localhost:3000/,https://a.example")
	if err != nil || !slices.Equal(got, []string{"https://a.example", "http://localhost:3000"}) {
		t.Fatalf("%v %v", got, err)
	}
	if got, err := ParseCORSOrigins(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"*", "null", "app.example.com", "ftp://x.example", "https://x.example/path",
		"https://user@x.example", "https://x.example?q", "https://x.example#f", "https://"} {
		if _, err := ParseCORSOrigins(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := New(Config{CORSOrigins: []string{"*"}}, &recordingConn{}); err == nil {
		t.Error("New accepted a wildcard origin")
	}
}
