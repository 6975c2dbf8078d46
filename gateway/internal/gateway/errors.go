package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusClientClosedRequest is nginx's 499: the client went away before the answer (gRPC CANCELLED).
const StatusClientClosedRequest = 499

// HTTPStatus is the gateway's one gRPC -> HTTP mapping, used by every route (issue 4's table).
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.NotFound:
		return http.StatusNotFound
	case codes.Aborted, codes.AlreadyExists:
		// A conflict with the resource's state (unloading a model that is still loading), not a fault.
		return http.StatusConflict
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Canceled:
		return StatusClientClosedRequest
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is the reference FastAPI app's error shape; field order is part of the byte-compatibility.
type errorBody struct {
	Status string `json:"status"`
	Detail string `json:"detail"`
}

// marshalJSON encodes like Starlette's JSONResponse: compact, UTF-8, no HTML escaping.
func marshalJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte(`{"status":"error","detail":"internal error encoding the response"}`)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body := marshalJSON(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// WriteError writes {"status": "error", "detail": detail} with the given HTTP status. A 401 names the
// scheme the server takes (RFC 6750), whichever route answered it.
func WriteError(w http.ResponseWriter, code int, detail string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeJSON(w, code, errorBody{Status: "error", Detail: detail})
}

// httpError is an error that already knows its HTTP status (form validation, body limits).
type httpError struct {
	code   int
	detail string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d: %s", e.code, e.detail) }

func badRequest(format string, args ...any) error {
	return &httpError{code: http.StatusBadRequest, detail: fmt.Sprintf(format, args...)}
}

// errorStatus turns any error of a request into (HTTP status, detail). A detail that would show the
// client the gateway's view of the network (see clientSafeDetail) is replaced, and logged in full under
// the request id.
func (s *Server) errorStatus(r *http.Request, err error) (int, string) {
	ctx := r.Context()
	if st := bodyStateFrom(ctx); st != nil && st.tooLarge.Load() {
		return http.StatusRequestEntityTooLarge, tooLargeDetail(st.limit)
	}
	if he, ok := err.(*httpError); ok {
		return he.code, he.detail
	}
	if st := bodyStateFrom(ctx); st != nil {
		if readErr := st.readErr.Load(); readErr != nil {
			if he := bodyReadFailure(*readErr); he != nil {
				return he.code, he.detail
			}
		}
	}
	st := status.Convert(err)
	// The server's gRPC receive limit answers RESOURCE_EXHAUSTED "received message larger than max";
	// for an HTTP client that is an oversized request, not a busy server.
	if st.Code() == codes.ResourceExhausted && strings.Contains(strings.ToLower(st.Message()), "larger than max") {
		return http.StatusRequestEntityTooLarge, "Request too large for the server: " + st.Message()
	}
	detail, withheld := clientSafeDetail(st)
	if withheld {
		s.errorLogger().LogAttrs(ctx, slog.LevelWarn, "backend call failed",
			slog.String("request_id", RequestID(ctx)), slog.String("path", r.URL.Path),
			slog.String("code", st.Code().String()), slog.String("error", st.Message()))
	}
	return HTTPStatus(st.Code()), detail
}

func tooLargeDetail(limit int64) string {
	return fmt.Sprintf("Request body too large (the limit is %d bytes).", limit)
}

// gatewayErrorHandler is grpc-gateway's error handler for the generated /v1 routes: same mapping and
// same error shape as the form endpoints.
func (s *Server) gatewayErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler,
	w http.ResponseWriter, r *http.Request, err error) {
	code, detail := s.errorStatus(r, err)
	WriteError(w, code, detail)
}

// routingErrorHandler answers unknown paths and wrong methods on the generated routes like FastAPI does.
func routingErrorHandler(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter,
	_ *http.Request, code int) {
	WriteError(w, code, http.StatusText(code))
}
