package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

// fakeBackend is an in-process paligemma-server: it records what it got and answers what it is told.
type fakeBackend struct {
	pb.UnimplementedSegmentServiceServer
	pb.UnimplementedModelServiceServer

	mu        sync.Mutex
	lastReq   *pb.SegmentRequest
	lastMD    metadata.MD
	deadline  time.Time
	hasDL     bool
	ctxErr    error
	resp      *pb.SegmentResponse
	err       error
	block     bool
	ctxErrSet chan struct{}
	stats     *pb.GetStatsResponse // what GetStats answers (metrics_test.go)
	statsErr  error                // or this error
}

func (f *fakeBackend) Segment(ctx context.Context, req *pb.SegmentRequest) (*pb.SegmentResponse, error) {
	f.mu.Lock()
	f.lastReq = req
	f.lastMD, _ = metadata.FromIncomingContext(ctx)
	f.deadline, f.hasDL = ctx.Deadline()
	block, resp, err := f.block, f.resp, f.err
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		f.mu.Lock()
		f.ctxErr = ctx.Err()
		f.mu.Unlock()
		close(f.ctxErrSet)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (f *fakeBackend) ListModels(context.Context, *pb.ListModelsRequest) (*pb.ListModelsResponse, error) {
	return &pb.ListModelsResponse{Models: []*pb.Model{{Id: "tiny", State: pb.Model_READY}}, DefaultModelId: "tiny"}, nil
}

// logWriter collects the gateway's JSON log lines (slog writes each record in one Write).
type logWriter struct{ e *env }

func (w logWriter) Write(p []byte) (int, error) {
	w.e.logMu.Lock()
	defer w.e.logMu.Unlock()
	w.e.logs = append(w.e.logs, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// accessLog parses the collected lines (each must be one JSON object).
func (e *env) accessLog() []map[string]any {
	e.t.Helper()
	e.logMu.Lock()
	defer e.logMu.Unlock()
	var out []map[string]any
	for _, l := range e.logs {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			e.t.Fatalf("log line is not JSON: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type env struct {
	t       *testing.T
	fake    *fakeBackend
	health  *health.Server
	grpcSrv *grpc.Server
	addr    string
	http    *httptest.Server
	logs    []string
	logMu   sync.Mutex
}

func startBackend(t *testing.T, lis net.Listener, fake *fakeBackend, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	s := grpc.NewServer(opts...)
	pb.RegisterSegmentServiceServer(s, fake)
	pb.RegisterModelServiceServer(s, fake)
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return s, h
}

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fake: &fakeBackend{ctxErrSet: make(chan struct{})}, addr: lis.Addr().String()}
	e.grpcSrv, e.health = startBackend(t, lis, e.fake)
	e.startGateway(mutate)
	return e
}

// gatewayOn dials e's backend (tlsConf nil: plaintext) and builds a gateway with cfg over that
// connection, which closes with the test.
func (e *env) gatewayOn(tlsConf *tls.Config, cfg Config) *Server {
	e.t.Helper()
	conn, err := Dial(e.addr, tlsConf)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	gw, err := New(cfg, conn)
	if err != nil {
		e.t.Fatal(err)
	}
	return gw
}

func (e *env) startGateway(mutate func(*Config)) {
	cfg := DefaultConfig()
	cfg.Logger = NewJSONLogger(logWriter{e})
	if mutate != nil {
		mutate(&cfg)
	}
	gw := e.gatewayOn(nil, cfg)
	e.http = httptest.NewServer(gw)
	e.t.Cleanup(e.http.Close)
}

type result struct {
	code   int
	body   []byte
	header http.Header
}

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, body, resp.Header}
}

func (e *env) get(path string) result {
	req, _ := http.NewRequest(http.MethodGet, e.http.URL+path, nil)
	return e.do(req)
}

func (e *env) post(path, contentType string, body io.Reader) result {
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return e.do(req)
}

// multipartBody builds a form like requests' files= / data= do.
func multipartBody(t *testing.T, fields map[string]string, file []byte) (string, *bytes.Buffer) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	if file != nil {
		fw, err := mw.CreateFormFile("image_file", "cat.png")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(file)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), &buf
}

func errJSON(detail string) string {
	return string(marshalJSON(errorBody{Status: "error", Detail: detail}))
}

func sampleResponse() *pb.SegmentResponse {
	return &pb.SegmentResponse{
		Image: []byte("\x89PNGimage"),
		Masks: []*pb.ObjectMask{{Mask: []byte("\x89PNGmask"), Coordinates: []int32{1, 2, 30, 40}, Label: "cat",
			Box: []int32{5, 6, 70, 80}, HasMask: true}},
		Text: "<loc0001><loc0002><loc0030><loc0040> cat", ModelId: "tiny", Width: 451, Height: 300,
		Timings: &pb.Timings{TotalMs: 12.5},
	}
}

func TestHTTPStatusMapping(t *testing.T) {
	want := map[codes.Code]int{
		codes.OK: 200, codes.InvalidArgument: 400, codes.PermissionDenied: 403, codes.NotFound: 404,
		codes.DeadlineExceeded: 504, codes.ResourceExhausted: 429, codes.Unavailable: 503, codes.Canceled: 499,
		codes.Internal: 500, codes.Unknown: 500, codes.FailedPrecondition: 500, codes.Unimplemented: 500,
		codes.Unauthenticated: 401, codes.Aborted: 409, codes.DataLoss: 500, codes.OutOfRange: 500,
		codes.AlreadyExists: 409,
	}
	for c, code := range want {
		if got := HTTPStatus(c); got != code {
			t.Errorf("%v -> %d, want %d", c, got, code)
		}
	}
}

func TestWelcome(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get("/")
	if r.code != 200 || string(r.body) != `{"message":"Welcome to the PaliGemma Segmentation API!"}` {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q", ct)
	}
}

func TestSegmentMultipartFile(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	image := []byte("\x89PNG fake image bytes")
	for _, path := range []string{"/segment", "/segment/"} {
		ct, body := multipartBody(t, map[string]string{"prompt": "segment cat", "model_id": "tiny", "max_new_tokens": "24"}, image)
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("X-Request-Id", "req-123")
		r := e.do(req)
		if r.code != 200 {
			t.Fatalf("%s: %d %s", path, r.code, r.body)
		}
		if r.header.Get("X-Request-Id") != "req-123" {
			t.Fatalf("request id not echoed: %q", r.header.Get("X-Request-Id"))
		}
		got := e.fake.lastReq
		if got.GetPrompt() != "segment cat" || !bytes.Equal(got.GetImageData(), image) || got.GetImageUrl() != "" ||
			got.GetModelId() != "tiny" || got.GetMaxNewTokens() != 24 || got.MaxNewTokens == nil {
			t.Fatalf("backend got %v", got)
		}
		if got.GetOptions().IncludeFullMasks == nil || got.GetOptions().GetIncludeFullMasks() ||
			got.GetOptions().IncludeImage != nil {
			t.Fatalf("form default options: %v", got.GetOptions())
		}
		if md := e.fake.lastMD.Get("x-request-id"); len(md) != 1 || md[0] != "req-123" {
			t.Fatalf("metadata x-request-id = %v", md)
		}
		want := `{"image":"` + base64.StdEncoding.EncodeToString([]byte("\x89PNGimage")) + `","masks":[{"mask":"` +
			base64.StdEncoding.EncodeToString([]byte("\x89PNGmask")) +
			`","coordinates":[1,2,30,40],"label":"cat","box":[5,6,70,80],"has_mask":true}],` +
			`"text":"<loc0001><loc0002><loc0030><loc0040> cat","model_id":"tiny","width":451,"height":300,` +
			`"timings":{"decode_ms":0,"fetch_ms":0,"masks_ms":0,"prefill_ms":0,"preprocess_ms":0,"queue_ms":0,"total_ms":12.5,"vision_ms":0}}`
		if string(r.body) != want {
			t.Fatalf("body\n got %s\nwant %s", r.body, want)
		}
	}
	logs := e.accessLog()
	if len(logs) != 2 || logs[0]["msg"] != "request" || logs[0]["level"] != "info" || logs[0]["method"] != "POST" ||
		logs[0]["status"] != float64(200) || logs[0]["request_id"] != "req-123" || logs[0]["path"] != "/segment" ||
		logs[0]["route"] != "/segment" || logs[0]["model"] != "tiny" || logs[0]["bytes"].(float64) <= 0 {
		t.Fatalf("access log %v", logs)
	}
	if _, ok := logs[0]["duration_ms"].(float64); !ok {
		t.Fatalf("duration_ms missing: %v", logs[0])
	}
	if ts, _ := logs[0]["ts"].(string); len(ts) != len("2006-01-02T15:04:05.000Z") || !strings.HasSuffix(ts, "Z") {
		t.Fatalf("ts %q", logs[0]["ts"])
	}
}

func TestSegmentURLEncoded(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = &pb.SegmentResponse{}
	form := url.Values{"prompt": {"segment left wheel"}, "image_url": {"http://127.0.0.1/car.jpg"},
		"include_image": {"false"}, "options": {`{"include_full_masks": true}`}}
	r := e.post("/segment", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	got := e.fake.lastReq
	if got.GetImageUrl() != "http://127.0.0.1/car.jpg" || got.ImageData != nil || got.MaxNewTokens != nil ||
		got.GetOptions().IncludeImage == nil || got.GetOptions().GetIncludeImage() || !got.GetOptions().GetIncludeFullMasks() {
		t.Fatalf("backend got %v", got)
	}
	// Empty answer: the original fields are still there, with the right types.
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	if m["image"] != "" || m["masks"] == nil || len(m["masks"].([]any)) != 0 {
		t.Fatalf("body %s", r.body)
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Fatal("no generated request id")
	}
	if md := e.fake.lastMD.Get("x-request-id"); len(md) != 1 || md[0] != r.header.Get("X-Request-Id") {
		t.Fatalf("metadata x-request-id %v vs header %q", md, r.header.Get("X-Request-Id"))
	}
}

func TestFormValidationErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	img := []byte("img")
	cases := []struct {
		name   string
		fields map[string]string
		file   []byte
		code   int
		detail string
	}{
		{"no image", map[string]string{"prompt": "segment cat"}, nil, 400, "Provide either an image file or image URL."},
		{"both", map[string]string{"prompt": "segment cat", "image_url": "http://x/y.png"}, img, 400,
			"Provide either an image file or image URL, not both."},
		{"no prompt", map[string]string{"image_url": "http://x/y.png"}, nil, 400, "Missing required form field: prompt"},
		{"empty prompt", map[string]string{"prompt": "", "image_url": "http://x/y.png"}, nil, 400, "Missing required form field: prompt"},
		{"bad max_new_tokens", map[string]string{"prompt": "p", "max_new_tokens": "many"}, img, 400,
			`max_new_tokens must be an integer, got "many"`},
		{"bad bool", map[string]string{"prompt": "p", "include_image": "maybe"}, img, 400,
			`include_image must be true or false, got "maybe"`},
	}
	for _, c := range cases {
		ct, body := multipartBody(t, c.fields, c.file)
		r := e.post("/segment", ct, body)
		if r.code != c.code || string(r.body) != errJSON(c.detail) {
			t.Errorf("%s: %d %s", c.name, r.code, r.body)
		}
	}
	// urlencoded: the same messages.
	r := e.post("/segment", "application/x-www-form-urlencoded", strings.NewReader("prompt=segment+cat"))
	if r.code != 400 || string(r.body) != errJSON("Provide either an image file or image URL.") {
		t.Errorf("urlencoded no image: %d %s", r.code, r.body)
	}
	// No body at all: prompt missing, like FastAPI.
	r = e.post("/segment", "", nil)
	if r.code != 400 || string(r.body) != errJSON("Missing required form field: prompt") {
		t.Errorf("empty: %d %s", r.code, r.body)
	}
	r = e.post("/segment", "application/json", strings.NewReader(`{"prompt": "x"}`))
	if r.code != 415 || !strings.HasPrefix(string(r.body), `{"status":"error","detail":"Unsupported Content-Type application/json`) {
		t.Errorf("json to form endpoint: %d %s", r.code, r.body)
	}
	r = e.post("/segment", "application/x-www-form-urlencoded", strings.NewReader("prompt=p&image_url=http://h/i&options=%7Bbad"))
	if r.code != 400 || !strings.Contains(string(r.body), "options must be a JSON object") {
		t.Errorf("bad options: %d %s", r.code, r.body)
	}
}

func TestBackendErrorsMapped(t *testing.T) {
	e := newEnv(t, nil)
	cases := map[codes.Code]int{
		codes.InvalidArgument: 400, codes.PermissionDenied: 403, codes.NotFound: 404, codes.DeadlineExceeded: 504,
		codes.ResourceExhausted: 429, codes.Unavailable: 503, codes.Internal: 500, codes.FailedPrecondition: 500,
	}
	for c, code := range cases {
		e.fake.mu.Lock()
		e.fake.err = status.Error(c, "the server says <"+c.String()+"> & more")
		e.fake.mu.Unlock()
		want := errJSON("the server says <" + c.String() + "> & more")
		r := e.post("/segment", "application/x-www-form-urlencoded", strings.NewReader("prompt=p&image_url=http://h/i.png"))
		if r.code != code || string(r.body) != want {
			t.Errorf("form %v: %d %s", c, r.code, r.body)
		}
		r = e.post("/v1/segment", "application/json", strings.NewReader(`{"prompt": "p", "image_url": "http://h/i.png"}`))
		if r.code != code || string(r.body) != want {
			t.Errorf("/v1 %v: %d %s", c, r.code, r.body)
		}
	}
	// The server's receive limit is an oversized request for an HTTP client.
	e.fake.mu.Lock()
	e.fake.err = status.Error(codes.ResourceExhausted, "Received message larger than max (30000000 vs. 22020096)")
	e.fake.mu.Unlock()
	r := e.post("/v1/segment", "application/json", strings.NewReader(`{"prompt": "p", "image_url": "http://h/i.png"}`))
	if r.code != 413 {
		t.Errorf("grpc size limit: %d %s", r.code, r.body)
	}
}

func TestV1JSONProtoNamesAndDefaults(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = &pb.SegmentResponse{ModelId: "tiny", Masks: []*pb.ObjectMask{{Coordinates: []int32{1, 2, 3, 4}}}}
	img := base64.StdEncoding.EncodeToString([]byte("\x89PNG"))
	r := e.post("/v1/segment", "application/json",
		strings.NewReader(`{"prompt": "segment cat", "image_data": "`+img+`", "max_new_tokens": 8, "options": {"include_image": false}}`))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	got := e.fake.lastReq
	if string(got.GetImageData()) != "\x89PNG" || got.GetMaxNewTokens() != 8 || got.GetOptions().GetIncludeImage() {
		t.Fatalf("backend got %v", got)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"image", "masks", "text", "model_id", "width", "height", "timings"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing (defaults must be emitted): %s", k, r.body)
		}
	}
	mask := m["masks"].([]any)[0].(map[string]any)
	for _, k := range []string{"mask", "coordinates", "label", "box", "full_mask", "has_mask"} {
		if _, ok := mask[k]; !ok {
			t.Errorf("mask field %q missing: %s", k, r.body)
		}
	}
	r = e.get("/v1/models")
	if r.code != 200 || !strings.Contains(string(r.body), `"default_model_id":"tiny"`) &&
		!strings.Contains(string(r.body), `"default_model_id": "tiny"`) {
		t.Fatalf("models: %d %s", r.code, r.body)
	}
	if !strings.Contains(string(r.body), `"load_ms"`) {
		t.Fatalf("defaults not emitted: %s", r.body)
	}
	// Unknown JSON fields are an error in the same shape.
	r = e.post("/v1/segment", "application/json", strings.NewReader(`{"prompt": "p", "imagefile": "x"}`))
	if r.code != 400 || !strings.HasPrefix(string(r.body), `{"status":"error","detail":`) {
		t.Fatalf("unknown field: %d %s", r.code, r.body)
	}
	// The request id reaches the server on generated routes too.
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/v1/segment", strings.NewReader(`{"prompt": "p", "image_url": "http://h/i"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", "abc-1")
	if r := e.do(req); r.code != 200 || r.header.Get("X-Request-Id") != "abc-1" {
		t.Fatalf("%d %v", r.code, r.header)
	}
	if md := e.fake.lastMD.Get("x-request-id"); len(md) != 1 || md[0] != "abc-1" {
		t.Fatalf("metadata %v", md)
	}
}

func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	e := newEnv(t, nil)
	for _, c := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/nope", 404}, {"GET", "/v1/nope", 404}, {"GET", "/segment", 405}, {"PUT", "/segment/", 405},
		{"POST", "/", 405}, {"DELETE", "/v1/models", 405}, {"GET", "/v1/segment", 405}, {"POST", "/healthz", 405},
		{"GET", "/docs/nope.js", 404},
	} {
		req, _ := http.NewRequest(c.method, e.http.URL+c.path, nil)
		r := e.do(req)
		if r.code != c.code || string(r.body) != errJSON(http.StatusText(c.code)) {
			t.Errorf("%s %s: %d %s", c.method, c.path, r.code, r.body)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 1000 })
	e.fake.resp = sampleResponse()
	big := bytes.Repeat([]byte("x"), 2000)
	want := errJSON("Request body too large (the limit is 1000 bytes).")
	ct, body := multipartBody(t, map[string]string{"prompt": "p"}, big)
	if r := e.post("/segment", ct, body); r.code != 413 || string(r.body) != want {
		t.Errorf("content-length: %d %s", r.code, r.body)
	}
	// Chunked (no Content-Length): the cap applies while reading.
	for _, path := range []string{"/segment", "/v1/segment"} {
		ctype, rd := multipartBody(t, map[string]string{"prompt": "p"}, big)
		if path == "/v1/segment" {
			ctype = "application/json"
			rd = bytes.NewBufferString(`{"prompt": "` + string(big) + `"}`)
		}
		// io.MultiReader hides the length, so the client sends the body chunked.
		req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, io.MultiReader(rd))
		req.Header.Set("Content-Type", ctype)
		if req.ContentLength != 0 {
			t.Fatalf("length known: %d", req.ContentLength)
		}
		if r := e.do(req); r.code != 413 || string(r.body) != want {
			t.Errorf("chunked %s: %d %s", path, r.code, r.body)
		}
	}
	// Under the cap is fine.
	ct, body = multipartBody(t, map[string]string{"prompt": "p"}, []byte("small"))
	if r := e.post("/segment", ct, body); r.code != 200 {
		t.Errorf("small: %d %s", r.code, r.body)
	}
}

func TestTimeoutBecomesDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
	e.fake.block = true
	start := time.Now()
	r := e.post("/segment", "application/x-www-form-urlencoded", strings.NewReader("prompt=p&image_url=http://h/i.png"))
	if r.code != 504 || !strings.HasPrefix(string(r.body), `{"status":"error","detail":`) {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
	e.fake.mu.Lock()
	hasDL, deadline := e.fake.hasDL, e.fake.deadline
	e.fake.mu.Unlock()
	if !hasDL || time.Until(deadline) > time.Second {
		t.Fatalf("backend deadline %v (set %v)", deadline, hasDL)
	}
}

func TestClientDisconnectCancelsCall(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.block = true
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.http.URL+"/v1/segment",
		strings.NewReader(`{"prompt": "p", "image_url": "http://h/i"}`))
	req.Header.Set("Content-Type", "application/json")
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("expected the client to give up")
	}
	select {
	case <-e.fake.ctxErrSet:
	case <-time.After(5 * time.Second):
		t.Fatal("the gRPC call was not cancelled")
	}
	if e.fake.ctxErr != context.Canceled {
		t.Fatalf("backend ctx err %v", e.fake.ctxErr)
	}
}

func TestBackendDownThenRecovers(t *testing.T) {
	// Reserve a port, then close it: nothing listens there.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	e := &env{t: t, fake: &fakeBackend{ctxErrSet: make(chan struct{}), resp: sampleResponse()}, addr: addr}
	e.startGateway(nil)
	ct, body := multipartBody(t, map[string]string{"prompt": "p"}, []byte("img"))
	r := e.post("/segment", ct, body)
	if r.code != 503 || !strings.HasPrefix(string(r.body), `{"status":"error","detail":`) {
		t.Fatalf("down: %d %s", r.code, r.body)
	}
	if r := e.get("/v1/models"); r.code != 503 {
		t.Fatalf("down /v1: %d %s", r.code, r.body)
	}
	if r := e.get("/readyz"); r.code != 503 || !strings.Contains(string(r.body), "backend not ready") {
		t.Fatalf("readyz down: %d %s", r.code, r.body)
	}
	if r := e.get("/healthz"); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	startBackend(t, lis, e.fake)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ct, body := multipartBody(t, map[string]string{"prompt": "p"}, []byte("img"))
		r = e.post("/segment", ct, body)
		if r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", r.code, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := e.get("/readyz"); r.code != 200 {
		t.Fatalf("readyz up: %d %s", r.code, r.body)
	}
}

func TestReadyzFollowsHealth(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.get("/readyz"); r.code != 200 || string(r.body) != `{"status":"ok"}` {
		t.Fatalf("%d %s", r.code, r.body)
	}
	e.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r := e.get("/readyz"); r.code != 503 || string(r.body) != errJSON("backend not ready: NOT_SERVING") {
		t.Fatalf("%d %s", r.code, r.body)
	}
}

func TestDocsAndOpenAPI(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get("/openapi.json")
	if r.code != 200 {
		t.Fatal(r.code)
	}
	var doc struct {
		Swagger string                    `json:"swagger"`
		Paths   map[string]map[string]any `json:"paths"`
		Defs    map[string]any            `json:"definitions"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	for path, method := range map[string]string{"/": "get", "/segment": "post", "/v1/segment": "post",
		"/v1/models": "get", "/v1/models:load": "post", "/v1/models:unload": "post", "/healthz": "get", "/readyz": "get",
		"/v1/stats": "get", "/metrics": "get"} {
		if _, ok := doc.Paths[path][method]; !ok {
			t.Errorf("openapi lacks %s %s", method, path)
		}
	}
	if _, ok := doc.Defs["rpcStatus"]; ok {
		t.Error("rpcStatus still documented")
	}
	if !strings.Contains(string(r.body), `"#/definitions/Error"`) || !strings.Contains(string(r.body), `"formData"`) {
		t.Error("hand-written parts missing")
	}
	for _, p := range []string{"/docs", "/docs/"} {
		r = e.get(p)
		if r.code != 200 || !strings.Contains(string(r.body), "swagger-ui-bundle.js") {
			t.Fatalf("%s: %d", p, r.code)
		}
	}
	r = e.get("/docs/swagger-initializer.js")
	if r.code != 200 || !strings.Contains(string(r.body), `"/openapi.json"`) {
		t.Fatalf("initializer: %d %s", r.code, r.body)
	}
	r = e.get("/docs/swagger-ui-bundle.js")
	if r.code != 200 || len(r.body) < 100000 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("bundle: %d %d", r.code, len(r.body))
	}
}

func TestRequestIDValidation(t *testing.T) {
	for id, ok := range map[string]bool{"abc-123": true, "": false, "has space": false, "ünï": false,
		strings.Repeat("a", 129): false, strings.Repeat("a", 128): true} {
		if validRequestID(id) != ok {
			t.Errorf("%q: %v", id, !ok)
		}
	}
}

func TestTarget(t *testing.T) {
	for in, want := range map[string]string{"localhost:50051": "dns:///localhost:50051",
		"dns:///server:50051": "dns:///server:50051", "unix:///tmp/s": "unix:///tmp/s",
		"passthrough:///x:1": "passthrough:///x:1"} {
		if got := Target(in); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
}
