package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// requestIDKey is both the HTTP header (X-Request-Id) and the gRPC metadata key the server sees.
const requestIDKey = "x-request-id"

type ctxKey int

const (
	ctxRequestID ctxKey = iota
	ctxBodyState
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

func (s *Server) withAccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if s.cfg.AccessLog == nil {
			return
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		s.cfg.AccessLog(fmt.Sprintf("%s method=%s path=%q status=%d bytes=%d duration_ms=%.1f request_id=%s remote=%s",
			start.UTC().Format(time.RFC3339Nano), r.Method, r.URL.Path, status, rec.bytes,
			float64(time.Since(start).Microseconds())/1000, RequestID(r.Context()), r.RemoteAddr))
	})
}

// bodyState records that a request body hit the cap, so that whichever layer sees the read error
// (form parsing, grpc-gateway's JSON decoder) the answer is 413.
type bodyState struct {
	limit    int64
	tooLarge atomic.Bool
}

func bodyStateFrom(ctx context.Context) *bodyState {
	st, _ := ctx.Value(ctxBodyState).(*bodyState)
	return st
}

type cappedBody struct {
	io.ReadCloser
	st *bodyState
}

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := err.(*http.MaxBytesError); ok {
		b.st.tooLarge.Store(true)
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
			r.Body = &cappedBody{ReadCloser: http.MaxBytesReader(w, orig, limit), st: st}
		}
		if s.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.cfg.RequestTimeout)
			defer cancel()
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
