package gateway

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// With the server down, grpc-go's error names the address it dialled ("connection error: desc =
// \"transport: Error while dialing: dial tcp 127.0.0.1:PORT: connect: connection refused\""). Before, every
// route handed that to the client. Now clients get a plain message and the log keeps the full error under
// the request id.
func TestUnavailableHidesInternalAddresses(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	lis.Close()
	e := &env{t: t, fake: &fakeBackend{ctxErrSet: make(chan struct{})}, addr: addr}
	e.startGateway(nil)
	for i, c := range []struct {
		method, path, ct, body, detail string
	}{
		{"POST", "/segment", "application/x-www-form-urlencoded", "prompt=p&image_url=http://h/i", "the model server is unavailable; retry later"},
		{"POST", "/v1/segment", "application/json", `{"prompt": "p", "image_url": "http://h/i"}`, "the model server is unavailable; retry later"},
		{"GET", "/v1/models", "", "", "the model server is unavailable; retry later"},
		{"GET", "/v1/stats", "", "", "the model server is unavailable; retry later"},
		{"GET", "/readyz", "", "", "backend not ready: the model server is unavailable; retry later"},
	} {
		req, _ := http.NewRequest(c.method, e.http.URL+c.path, strings.NewReader(c.body))
		if c.ct != "" {
			req.Header.Set("Content-Type", c.ct)
		}
		id := "rid-down-" + string(rune('a'+i))
		req.Header.Set("X-Request-Id", id)
		r := e.do(req)
		if r.code != 503 || string(r.body) != errJSON(c.detail) {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.code, r.body)
		}
		if strings.Contains(string(r.body), port) || strings.Contains(string(r.body), "127.0.0.1") {
			t.Errorf("%s: address in the answer: %s", c.path, r.body)
		}
		logged := false
		for _, l := range e.accessLog() {
			if l["msg"] == "backend call failed" && l["request_id"] == id && l["code"] == "Unavailable" &&
				strings.Contains(l["error"].(string), addr) {
				logged = true
			}
		}
		if !logged {
			t.Errorf("%s: the full error is not in the log under %s", c.path, id)
		}
	}
}

// The server's own messages are written for clients and pass unchanged, UNAVAILABLE included.
func TestServerMessagesPassUnchanged(t *testing.T) {
	e := newEnv(t, nil)
	for _, msg := range []string{"the server is shutting down", "model tiny is loading; retry later",
		"image_url host 10.1.2.3 is a private address"} {
		e.fake.mu.Lock()
		e.fake.err = status.Error(codes.Unavailable, msg)
		e.fake.mu.Unlock()
		r := e.post("/v1/segment", "application/json", strings.NewReader(`{"prompt": "p", "image_url": "http://h/i"}`))
		if r.code != 503 || string(r.body) != errJSON(msg) {
			t.Errorf("%q: %d %s", msg, r.code, r.body)
		}
	}
	// A client error keeps the server's words, even ones that look like grpc-go's.
	if got, withheld := clientSafeDetail(status.New(codes.InvalidArgument, "could not fetch image_url: tls: bad record")); withheld ||
		got != "could not fetch image_url: tls: bad record" {
		t.Errorf("INVALID_ARGUMENT rewritten: %q", got)
	}
	for _, msg := range []string{
		`connection error: desc = "transport: Error while dialing: dial tcp 10.0.3.7:50051: connect: connection refused"`,
		`last connection error: connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate is valid for server.internal, not 10.0.3.7"`,
		`name resolver error: produced zero addresses`,
	} {
		if got, withheld := clientSafeDetail(status.New(codes.Unavailable, msg)); !withheld || strings.Contains(got, "10.0.3.7") {
			t.Errorf("%q: %q %v", msg, got, withheld)
		}
	}
}

// panicConn panics on every call: a gateway bug.
type panicConn struct{}

func (panicConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error {
	panic("gateway bug at /srv/secret/path.go")
}

func (panicConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	panic("no streams")
}

// A panic in a handler is a 500 in the usual shape and a log line with the request id, not a dropped
// connection, and the panic's text stays in the log.
func TestPanicIs500WithLogLine(t *testing.T) {
	e := &env{t: t}
	cfg := DefaultConfig()
	cfg.Logger = NewJSONLogger(logWriter{e})
	gw, err := New(cfg, panicConn{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httpTestServer(t, gw)
	req, _ := http.NewRequest("POST", srv.URL+"/segment", strings.NewReader("prompt=p&image_url=http://h/i"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Request-Id", "rid-panic")
	r := e.do(req)
	if r.code != 500 || string(r.body) != errJSON("internal error in the gateway") {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var panicLine, accessLine bool
	for _, l := range e.accessLog() {
		if l["msg"] == "handler panic" && l["request_id"] == "rid-panic" && strings.Contains(l["panic"].(string), "gateway bug") {
			panicLine = true
		}
		if l["msg"] == "request" && l["request_id"] == "rid-panic" && l["status"] == float64(500) {
			accessLine = true
		}
	}
	if !panicLine || !accessLine {
		t.Fatalf("log lines (panic %v, access %v): %v", panicLine, accessLine, e.logs)
	}
}

func httpTestServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
