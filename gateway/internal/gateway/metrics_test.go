package gateway

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	pb "github.com/paligemma-serve/paligemma-serve/gateway/gen/paligemma/v1"
)

func (f *fakeBackend) GetStats(context.Context, *pb.GetStatsRequest) (*pb.GetStatsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statsErr != nil {
		return nil, f.statsErr
	}
	if f.stats == nil {
		return &pb.GetStatsResponse{}, nil
	}
	return f.stats, nil
}

type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads Prometheus' text format (the subset promhttp writes: no timestamps, labels
// without escaped quotes in the values used here).
func parseMetrics(t *testing.T, text string) []sample {
	t.Helper()
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("bad value in %q", line)
		}
		head := line[:sp]
		s := sample{name: head, labels: map[string]string{}, value: v}
		if i := strings.IndexByte(head, '{'); i >= 0 {
			s.name = head[:i]
			for _, kv := range strings.Split(strings.TrimSuffix(head[i+1:], "}"), ",") {
				if kv == "" {
					continue
				}
				k, val, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("bad label %q in %q", kv, line)
				}
				s.labels[k] = strings.Trim(val, `"`)
			}
		}
		out = append(out, s)
	}
	return out
}

// find returns the value of the one sample named name whose labels include want, and whether it exists.
func find(samples []sample, name string, want map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

func (e *env) scrape() []sample {
	e.t.Helper()
	r := e.get("/metrics")
	if r.code != 200 {
		e.t.Fatalf("/metrics: %d %s", r.code, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		e.t.Fatalf("/metrics content type %q", ct)
	}
	return parseMetrics(e.t, string(r.body))
}

func expect(t *testing.T, samples []sample, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := find(samples, name, labels)
	if !ok {
		t.Errorf("%s%v missing", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestMetricsExportsServerStats(t *testing.T) {
	e := newEnv(t, nil)
	e.fake.resp = sampleResponse()
	e.fake.stats = &pb.GetStatsResponse{
		UptimeSeconds: 12.5,
		Requests: []*pb.RequestCount{
			{Method: "Segment", ModelId: "tiny", Code: "OK", Count: 3},
			{Method: "Segment", ModelId: "", Code: "INVALID_ARGUMENT", Count: 2},
		},
		RequestDurations: []*pb.DurationHistogram{{Method: "Segment", Bounds: []float64{0.1, 1, 10},
			CumulativeCounts: []int64{1, 4, 5}, SumSeconds: 7.25, Count: 5}},
		Stages:          []*pb.StageTime{{Stage: "decode", SumMs: 1500, Count: 3}},
		TokensGenerated: 42,
		Models: []*pb.ModelStats{
			{ModelId: "tiny", State: pb.Model_READY, Bytes: 1234, QueueDepth: 2, Running: 1, DecodeSteps: 10,
				DecodeSequences: 15, MaxBatchSeen: 3, MaxBatch: 8, Completed: 4,
				VisionCache:   &pb.CacheStats{Hits: 5, Misses: 2, Bytes: 999, BudgetBytes: 1 << 20, Entries: 2},
				ResponseCache: &pb.CacheStats{}},
			{ModelId: "org/big", State: pb.Model_LOADING,
				Progress: &pb.LoadProgress{Phase: "download", File: "model.safetensors", BytesDone: 100, BytesTotal: 400}},
		},
	}
	ct, body := multipartBody(t, map[string]string{"prompt": "p"}, []byte("img"))
	if r := e.post("/segment", ct, body); r.code != 200 {
		t.Fatalf("segment: %d %s", r.code, r.body)
	}
	if r := e.get("/v1/models"); r.code != 200 {
		t.Fatalf("models: %d", r.code)
	}
	if r := e.get("/no/such/thing"); r.code != 404 {
		t.Fatalf("unknown path: %d", r.code)
	}
	m := e.scrape()

	expect(t, m, "paligemma_server_up", nil, 1)
	expect(t, m, "paligemma_server_uptime_seconds", nil, 12.5)
	expect(t, m, "paligemma_server_requests_total", map[string]string{"method": "Segment", "model": "tiny", "code": "OK"}, 3)
	expect(t, m, "paligemma_server_requests_total", map[string]string{"method": "Segment", "model": "", "code": "INVALID_ARGUMENT"}, 2)
	expect(t, m, "paligemma_server_request_duration_seconds_bucket", map[string]string{"method": "Segment", "le": "1"}, 4)
	expect(t, m, "paligemma_server_request_duration_seconds_bucket", map[string]string{"method": "Segment", "le": "+Inf"}, 5)
	expect(t, m, "paligemma_server_request_duration_seconds_sum", map[string]string{"method": "Segment"}, 7.25)
	expect(t, m, "paligemma_server_request_duration_seconds_count", map[string]string{"method": "Segment"}, 5)
	expect(t, m, "paligemma_server_stage_duration_seconds_sum", map[string]string{"stage": "decode"}, 1.5)
	expect(t, m, "paligemma_server_stage_duration_seconds_count", map[string]string{"stage": "decode"}, 3)
	expect(t, m, "paligemma_server_tokens_generated_total", nil, 42)
	expect(t, m, "paligemma_server_model_state", map[string]string{"model": "tiny", "state": "ready"}, 1)
	expect(t, m, "paligemma_server_model_bytes", map[string]string{"model": "tiny"}, 1234)
	expect(t, m, "paligemma_server_model_queue_depth", map[string]string{"model": "tiny"}, 2)
	expect(t, m, "paligemma_server_model_running_sequences", map[string]string{"model": "tiny"}, 1)
	expect(t, m, "paligemma_server_decode_steps_total", map[string]string{"model": "tiny"}, 10)
	expect(t, m, "paligemma_server_decode_sequences_total", map[string]string{"model": "tiny"}, 15)
	expect(t, m, "paligemma_server_decode_batch_max_seen", map[string]string{"model": "tiny"}, 3)
	expect(t, m, "paligemma_server_cache_hits_total", map[string]string{"model": "tiny", "cache": "vision"}, 5)
	expect(t, m, "paligemma_server_cache_misses_total", map[string]string{"model": "tiny", "cache": "vision"}, 2)
	expect(t, m, "paligemma_server_cache_bytes", map[string]string{"model": "tiny", "cache": "vision"}, 999)
	expect(t, m, "paligemma_server_model_state", map[string]string{"model": "org/big", "state": "loading"}, 1)
	expect(t, m, "paligemma_server_model_load_phase", map[string]string{"model": "org/big", "phase": "download"}, 1)
	expect(t, m, "paligemma_server_model_load_bytes_done", map[string]string{"model": "org/big", "file": "model.safetensors"}, 100)
	expect(t, m, "paligemma_server_model_load_bytes_total", map[string]string{"model": "org/big", "file": "model.safetensors"}, 400)
	if _, ok := find(m, "paligemma_server_model_queue_depth", map[string]string{"model": "org/big"}); ok {
		t.Error("a loading model has no scheduler counters")
	}

	// The gateway's own: route patterns, not paths; unknown paths under "other"; the scrape itself is
	// counted once it has finished, so it is not in this scrape yet.
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/segment", "method": "POST", "code": "200"}, 1)
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/v1/models", "method": "GET", "code": "200"}, 1)
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "other", "method": "GET", "code": "404"}, 1)
	expect(t, m, "paligemma_gateway_http_request_duration_seconds_count", map[string]string{"route": "/segment", "method": "POST"}, 1)
	expect(t, m, "paligemma_gateway_http_requests_in_flight", nil, 1) // the scrape itself
	if _, ok := find(m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/metrics"}); ok {
		t.Error("the first scrape counted itself")
	}
	m = e.scrape()
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/metrics", "method": "GET", "code": "200"}, 1)
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "other", "method": "GET", "code": "404"}, 1)

	// Access-log lines are JSON and carry the route pattern.
	for _, l := range e.accessLog() {
		if l["route"] == "" || l["request_id"] == "" {
			t.Errorf("log line without route or request_id: %v", l)
		}
	}
}

func TestMetricsBackendDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	e := &env{t: t, fake: &fakeBackend{ctxErrSet: make(chan struct{})}, addr: addr}
	e.startGateway(nil)
	if r := e.get("/v1/models"); r.code != 503 {
		t.Fatalf("down /v1/models: %d", r.code)
	}
	m := e.scrape()
	expect(t, m, "paligemma_server_up", nil, 0)
	for _, s := range m {
		if strings.HasPrefix(s.name, "paligemma_server_") && s.name != "paligemma_server_up" {
			t.Errorf("server metric while the server is down: %s", s.name)
		}
	}
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/v1/models", "method": "GET", "code": "503"}, 1)
	if _, ok := find(m, "go_goroutines", nil); !ok {
		t.Error("Go runtime metrics missing")
	}
}

func TestMetricsMethodNotAllowed(t *testing.T) {
	e := newEnv(t, nil)
	if r := e.post("/metrics", "text/plain", strings.NewReader("x")); r.code != 405 {
		t.Fatalf("POST /metrics: %d", r.code)
	}
	m := e.scrape()
	expect(t, m, "paligemma_gateway_http_requests_total", map[string]string{"route": "/metrics", "method": "POST", "code": "405"}, 1)
}
