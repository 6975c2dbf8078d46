package gateway

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

const (
	userKey  = "user-key-0123456789abcdef"
	adminKey = "admin-key-0123456789abcdef"
)

// keyCheck is the server's API-key contract, as a fake: "authorization: Bearer <key>" metadata; no or an
// unknown key is UNAUTHENTICATED; a user key may call Segment and ListModels, admin also LoadModel,
// UnloadModel and GetStats; health stays open. It records the metadata of every call it sees.
type keyCheck struct {
	mu   sync.Mutex
	seen []metadata.MD
}

func (k *keyCheck) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	k.mu.Lock()
	k.seen = append(k.seen, md.Copy())
	k.mu.Unlock()
	if strings.HasPrefix(info.FullMethod, "/grpc.health.v1.") {
		return h(ctx, req)
	}
	role := ""
	if vals := md.Get("authorization"); len(vals) == 1 {
		switch vals[0] {
		case "Bearer " + userKey:
			role = "user"
		case "Bearer " + adminKey:
			role = "admin"
		}
	}
	if role == "" {
		return nil, status.Error(codes.Unauthenticated, "missing or unknown API key")
	}
	switch info.FullMethod {
	case pb.ModelService_LoadModel_FullMethodName, pb.ModelService_UnloadModel_FullMethodName,
		pb.ModelService_GetStats_FullMethodName:
		if role != "admin" {
			return nil, status.Error(codes.PermissionDenied, "this API key may not call "+info.FullMethod)
		}
	}
	return h(ctx, req)
}

func (k *keyCheck) metadata() []metadata.MD {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]metadata.MD(nil), k.seen...)
}

func (f *fakeBackend) UnloadModel(context.Context, *pb.UnloadModelRequest) (*pb.UnloadModelResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return &pb.UnloadModelResponse{Model: &pb.Model{Id: "tiny", State: pb.Model_AVAILABLE}}, nil
}

// newKeyedEnv is newEnv with a backend that checks API keys.
func newKeyedEnv(t *testing.T) (*env, *keyCheck) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys := &keyCheck{}
	e := &env{t: t, fake: &fakeBackend{ctxErrSet: make(chan struct{}), resp: sampleResponse()}, addr: lis.Addr().String()}
	e.grpcSrv, e.health = startBackend(t, lis, e.fake, grpc.UnaryInterceptor(keys.unary))
	e.startGateway(nil)
	return e, keys
}

// call sends one request with the given Authorization header ("" for none).
func (e *env) call(method, path, contentType, body, auth string) result {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
	if body == "" {
		req, _ = http.NewRequest(method, e.http.URL+path, nil)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Cookie", "session=browser-cookie")
	return e.do(req)
}

type route struct {
	name, method, path, contentType, body string
	admin                                 bool // needs the admin role
}

var keyedRoutes = []route{
	{"form segment", "POST", "/segment", "application/x-www-form-urlencoded", "prompt=p&image_url=http://h/i.png", false},
	{"v1 segment", "POST", "/v1/segment", "application/json", `{"prompt": "p", "image_url": "http://h/i.png"}`, false},
	{"v1 models", "GET", "/v1/models", "", "", false},
	{"v1 unload", "POST", "/v1/models:unload", "application/json", `{"model_id": "tiny"}`, true},
	{"v1 stats", "GET", "/v1/stats", "", "", true},
	{"metrics", "GET", "/metrics", "", "", true},
}

// Every route that calls the server passes the caller's key on as "authorization" metadata (exactly one
// value, nothing else of the caller's headers), and the server's refusals keep their meaning over HTTP:
// no/unknown key 401 with WWW-Authenticate: Bearer, wrong role 403, both in the usual error body.
func TestCredentialsForwardedOnEveryRoute(t *testing.T) {
	e, keys := newKeyedEnv(t)
	for _, rt := range keyedRoutes {
		for _, c := range []struct {
			who, auth string
			want      int
		}{
			{"anonymous", "", 401}, {"unknown key", "Bearer not-a-key-0000000000", 401},
			{"wrong scheme", "Basic " + userKey, 401}, {"user", "Bearer " + userKey, 200},
			{"admin", "Bearer " + adminKey, 200},
		} {
			want := c.want
			if rt.admin && c.who == "user" {
				want = 403
			}
			r := e.call(rt.method, rt.path, rt.contentType, rt.body, c.auth)
			if r.code != want {
				t.Errorf("%s as %s: %d %s, want %d", rt.name, c.who, r.code, r.body, want)
				continue
			}
			switch want {
			case 401:
				if got := r.header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("%s as %s: WWW-Authenticate %q", rt.name, c.who, got)
				}
				if string(r.body) != errJSON("missing or unknown API key") {
					t.Errorf("%s as %s: body %s", rt.name, c.who, r.body)
				}
			case 403:
				if !strings.HasPrefix(string(r.body), `{"status":"error","detail":"this API key may not call`) ||
					r.header.Get("WWW-Authenticate") != "" {
					t.Errorf("%s as %s: %v %s", rt.name, c.who, r.header, r.body)
				}
			case 200:
				if rt.name == "metrics" && !strings.Contains(string(r.body), "paligemma_server_up 1") {
					t.Errorf("metrics as %s: server stats missing", c.who)
				}
			}
		}
	}
	// What reached the server: one authorization value, the caller's own; no cookie or other header.
	mds := keys.metadata()
	withKey := 0
	for _, md := range mds {
		for k := range md {
			if strings.HasPrefix(k, "grpcgateway-") || k == "cookie" {
				t.Errorf("caller header forwarded as %q", k)
			}
		}
		if vals := md.Get("authorization"); len(vals) > 1 {
			t.Errorf("authorization sent %d times: %v", len(vals), vals)
		} else if len(vals) == 1 && vals[0] == "Bearer "+adminKey {
			withKey++
		}
	}
	if withKey != len(keyedRoutes) {
		t.Errorf("admin key reached the server on %d calls, want %d (one per route)", withKey, len(keyedRoutes))
	}
	// The keys are never written to the gateway's log.
	e.logMu.Lock()
	defer e.logMu.Unlock()
	for _, l := range e.logs {
		if strings.Contains(l, userKey) || strings.Contains(l, adminKey) || strings.Contains(l, "not-a-key") {
			t.Errorf("key in the log: %s", l)
		}
	}
}

// Health and discovery stay open: no key needed, and none is sent with the health check.
func TestOpenRoutesNeedNoKey(t *testing.T) {
	e, keys := newKeyedEnv(t)
	for _, p := range []string{"/readyz", "/healthz", "/", "/openapi.json", "/docs/"} {
		if r := e.get(p); r.code != 200 {
			t.Errorf("%s without a key: %d %s", p, r.code, r.body)
		}
	}
	if r := e.call("GET", "/readyz", "", "", "Bearer "+adminKey); r.code != 200 {
		t.Fatalf("readyz: %d", r.code)
	}
	for _, md := range keys.metadata() {
		if len(md.Get("authorization")) != 0 {
			t.Errorf("health check carried a key: %v", md)
		}
	}
}

// An Authorization header the server could not be given as sent is refused before any call.
func TestAmbiguousAuthorizationRefused(t *testing.T) {
	e, keys := newKeyedEnv(t)
	req, _ := http.NewRequest("GET", e.http.URL+"/v1/models", nil)
	req.Header.Add("Authorization", "Bearer "+userKey)
	req.Header.Add("Authorization", "Bearer "+adminKey)
	if r := e.do(req); r.code != 400 || string(r.body) != errJSON("Send one Authorization header, not several.") {
		t.Errorf("two headers: %d %s", r.code, r.body)
	}
	req, _ = http.NewRequest("GET", e.http.URL+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer clé-"+userKey)
	if r := e.do(req); r.code != 400 {
		t.Errorf("non-printable header: %d %s", r.code, r.body)
	}
	if n := len(keys.metadata()); n != 0 {
		t.Errorf("the server was called %d times", n)
	}
}

// /metrics: a server that refuses the scrape's key gets 401/403 with no metrics at all; one that does not
// answer leaves the gateway's own metrics with paligemma_server_up 0 (TestMetricsBackendDown), also when it
// fails for another reason.
func TestMetricsRefusedOrDown(t *testing.T) {
	e, _ := newKeyedEnv(t)
	for auth, want := range map[string]int{"": 401, "Bearer " + userKey: 403} {
		r := e.call("GET", "/metrics", "", "", auth)
		if r.code != want || strings.Contains(string(r.body), "paligemma_gateway_") ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("metrics with %q: %d %s", auth, r.code, r.body)
		}
	}
	plain := newEnv(t, nil)
	plain.fake.statsErr = status.Error(codes.Unavailable, "shutting down")
	m := plain.scrape()
	expect(t, m, "paligemma_server_up", nil, 0)
	if _, ok := find(m, "paligemma_gateway_http_requests_in_flight", nil); !ok {
		t.Error("gateway metrics missing while the server is down")
	}
}

// ABORTED (UnloadModel of a model that is loading: its load is cancelled) and ALREADY_EXISTS are a
// conflict with the model's state: 409, not 500.
func TestConflictIs409(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []codes.Code{codes.Aborted, codes.AlreadyExists} {
		e.fake.mu.Lock()
		e.fake.err = status.Error(c, "model tiny is loading; its load was cancelled")
		e.fake.mu.Unlock()
		r := e.post("/v1/models:unload", "application/json", strings.NewReader(`{"model_id": "tiny"}`))
		if r.code != 409 || string(r.body) != errJSON("model tiny is loading; its load was cancelled") {
			t.Errorf("%v: %d %s", c, r.code, r.body)
		}
	}
}

// /openapi.json documents the bearer key (Swagger UI's "Authorize") and which routes need none.
func TestOpenAPIDocumentsBearerKeys(t *testing.T) {
	spec, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SecurityDefinitions map[string]struct{ Type, Name, In string } `json:"securityDefinitions"`
		Security            []map[string][]string                      `json:"security"`
		Paths               map[string]map[string]struct {
			Security *[]any `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		t.Fatal(err)
	}
	if d := doc.SecurityDefinitions["bearer"]; d.Type != "apiKey" || d.Name != "Authorization" || d.In != "header" {
		t.Fatalf("securityDefinitions %+v", doc.SecurityDefinitions)
	}
	if len(doc.Security) != 1 || doc.Security[0]["bearer"] == nil {
		t.Fatalf("global security %v", doc.Security)
	}
	for _, p := range []string{"/", "/healthz", "/readyz"} {
		if s := doc.Paths[p]["get"].Security; s == nil || len(*s) != 0 {
			t.Errorf("%s should need no key: %v", p, s)
		}
	}
	if s := doc.Paths["/v1/models:unload"]["post"].Security; s != nil {
		t.Errorf("/v1/models:unload overrides the global key: %v", *s)
	}
}
