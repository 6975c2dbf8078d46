package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// requestIDKey is both the HTTP header (X-Request-Id) and the gRPC metadata key the server sees.
const requestIDKey = "x-request-id"

type ctxKey int

const (
	ctxRequestID ctxKey = iota
	ctxBodyState
	ctxReqInfo
)

// RequestID is the request's id: the client's X-Request-Id when usable, otherwise a new one.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxRequestID).(string)
	return id
}

// validRequestID keeps what gRPC metadata can carry (printable ASCII) and a sane length.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxRequestID, id)))
	})
}

// statusRecorder remembers the status and counts the body bytes for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// reqInfo is what the handlers learn about a request that its access-log line and metrics need:
// the route pattern that served it and the model, when known. The handlers fill it in.
type reqInfo struct {
	mu    sync.Mutex
	route string
	model string
}

func reqInfoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(ctxReqInfo).(*reqInfo)
	return ri
}

// setRoute records the route pattern serving the request (the first one set wins).
func setRoute(ctx context.Context, route string) {
	if ri := reqInfoFrom(ctx); ri != nil {
		ri.mu.Lock()
		if ri.route == "" {
			ri.route = route
		}
		ri.mu.Unlock()
	}
}

// setModel records the model the request names or was answered by.
func setModel(ctx context.Context, model string) {
	if ri := reqInfoFrom(ctx); ri != nil && model != "" {
		ri.mu.Lock()
		ri.model = model
		ri.mu.Unlock()
	}
}

// withObservability counts the request in the HTTP metrics and writes its access-log line: one JSON
// object with request_id, method, path, route, status, bytes, duration_ms, model (when known), remote.
func (s *Server) withObservability(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		ri := &reqInfo{}
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), ctxReqInfo, ri)))
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		elapsed := time.Since(start)
		ri.mu.Lock()
		route, model := ri.route, ri.model
		ri.mu.Unlock()
		if route == "" {
			route = "other"
		}
		s.metrics.observe(route, r.Method, status, elapsed)
		if s.cfg.Logger == nil {
			return
		}
		attrs := []slog.Attr{
			slog.String("request_id", RequestID(r.Context())),
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Int64("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("remote", r.RemoteAddr),
		}
		if model != "" {
			attrs = append(attrs, slog.String("model", model))
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		} else if status >= 400 {
			level = slog.LevelWarn
		}
		s.cfg.Logger.LogAttrs(context.Background(), level, "request", attrs...)
	})
}

// bodyState records that a request body hit the cap, so that whichever layer sees the read error
// (form parsing, grpc-gateway's JSON decoder) the answer is 413.
type bodyState struct {
	limit    int64
	tooLarge atomic.Bool
	// readErr is the first other error reading the body (the read deadline, a reset connection). The
	// /v1 routes' decoder error reaches the error handler only as text that names the sockets'
	// addresses ("read tcp 10.0.0.5:8000->...: i/o timeout"); the answer is made from this instead.
	readErr atomic.Pointer[error]
}

func bodyStateFrom(ctx context.Context) *bodyState {
	st, _ := ctx.Value(ctxBodyState).(*bodyState)
	return st
}

type cappedBody struct {
	io.ReadCloser
	st   *bodyState
	size int64 // the request's Content-Length, at most the cap; -1 when unknown
}

func (b *cappedBody) contentLength() int64 { return b.size }

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := err.(*http.MaxBytesError); ok {
		b.st.tooLarge.Store(true)
	} else if err != nil && err != io.EOF {
		b.st.readErr.CompareAndSwap(nil, &err)
	}
	return n, err
}

// withLimits caps the body (413), bounds the request's time (the context deadline becomes the gRPC
// deadline) and ties the gRPC call to the client's connection (net/http cancels the context when the
// client goes away, which cancels the call).
func (s *Server) withLimits(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := s.cfg.MaxBodyBytes
		if limit > 0 && r.ContentLength > limit {
			// Known too large: answer without passing it on. Bodies up to twice the cap are read and
			// dropped first so that simple clients, which send the whole body before reading, see the 413.
			if r.ContentLength <= 2*limit {
				drainBody(w, r.Body, r.ContentLength)
			}
			w.Header().Set("Connection", "close")
			WriteError(w, http.StatusRequestEntityTooLarge, tooLargeDetail(limit))
			return
		}
		ctx := r.Context()
		orig := r.Body
		var st *bodyState
		if limit > 0 {
			st = &bodyState{limit: limit}
			ctx = context.WithValue(ctx, ctxBodyState, st)
			r.Body = &cappedBody{ReadCloser: http.MaxBytesReader(w, orig, limit), st: st, size: r.ContentLength}
		}
		if s.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
			// The context does not interrupt a body read: a client that stops sending mid-body would hold
			// the handler forever. The read deadline ends that read; bodyError answers 408.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
		}
		next.ServeHTTP(w, r.WithContext(ctx))
		if st != nil && st.tooLarge.Load() {
			// A streamed (chunked) body ran over the cap: drop up to another cap's worth, as above; the
			// 413 is still buffered and goes out when this handler returns.
			drainBody(w, orig, limit)
		}
	})
}

// drainBody reads and drops at most n bytes of body within 10 seconds.
func drainBody(w http.ResponseWriter, body io.Reader, n int64) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(body, n))
}

// NewJSONLogger logs one JSON object per line in the server's shape: {"ts", "level" (lower case), "msg",
// fields...}, so both processes' lines parse and filter alike.
func NewJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("ts", a.Value.Time().UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			case slog.LevelKey:
				return slog.String("level", strings.ToLower(a.Value.String()))
			}
			return a
		},
	}))
}

// withRecover turns a panic in a handler into a 500 with the usual error body (when nothing was written
// yet) and a log line with the request id, instead of net/http's silently dropped connection.
func (s *Server) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.errorLogger().LogAttrs(r.Context(), slog.LevelError, "handler panic",
				slog.String("request_id", RequestID(r.Context())), slog.String("path", r.URL.Path),
				slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
			if rec.status == 0 {
				WriteError(w, http.StatusInternalServerError, "internal error in the gateway")
			}
		}()
		next.ServeHTTP(rec, r)
	})
}
