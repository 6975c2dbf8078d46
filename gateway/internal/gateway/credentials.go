package gateway

import (
	"context"
	"net/http"

	"google.golang.org/grpc/metadata"
)

// The server is the security boundary: it checks API keys itself (its port can be reached without the
// gateway). The gateway's part is to pass the caller's credentials on unchanged, as the gRPC metadata
// the server reads ("authorization: Bearer <key>"), and never to write them anywhere.
const authorizationKey = "authorization"

// validMetadataValue: what gRPC metadata can carry (printable ASCII and space).
func validMetadataValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}

// checkAuthorization refuses an Authorization header the server could not be given faithfully: several of
// them (which one counts would be up to whoever reads first) or one that gRPC metadata cannot carry
// (grpc-gateway would silently drop it and the caller would be treated as anonymous).
func checkAuthorization(r *http.Request) error {
	vals := r.Header.Values("Authorization")
	if len(vals) > 1 {
		return badRequest("Send one Authorization header, not several.")
	}
	if len(vals) == 1 && !validMetadataValue(vals[0]) {
		return badRequest("The Authorization header must be printable ASCII (Authorization: Bearer <key>).")
	}
	return nil
}

// withCredentials answers 400 for an Authorization header checkAuthorization refuses, on every route.
func (s *Server) withCredentials(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkAuthorization(r); err != nil {
			s.writeErr(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// outgoingContext is the request's context with the metadata every call to the server carries: the
// request id and, when the caller sent one, its Authorization header. The hand-written routes use it;
// the generated /v1 routes get the same from grpc-gateway (which forwards Authorization as
// "authorization") and the mux's metadata hook.
func outgoingContext(r *http.Request) context.Context {
	pairs := []string{requestIDKey, RequestID(r.Context())}
	if auth := r.Header.Get("Authorization"); auth != "" {
		pairs = append(pairs, authorizationKey, auth)
	}
	return metadata.AppendToOutgoingContext(r.Context(), pairs...)
}

// forwardNoHeaders is the mux's incoming header matcher: grpc-gateway's default would also send the
// Cookie, User-Agent, Referer, ... headers as "grpcgateway-*" metadata. The server reads none of them, so
// none leave the gateway (Authorization is passed on by grpc-gateway itself, see outgoingContext).
func forwardNoHeaders(string) (string, bool) { return "", false }
