package gateway

import (
	"log/slog"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcClientMarkers are phrases of the errors grpc-go makes itself, on the gateway's side of the call:
// failed dials ("connection error: desc = \"transport: Error while dialing: dial tcp 10.0.3.7:50051:
// connect: connection refused\""), resolver failures, TLS handshakes. They name internal addresses,
// host names and certificate subjects, which a client has no business seeing. The server's own messages
// never contain them (its statuses are written for clients).
var grpcClientMarkers = []string{
	"connection error", "transport:", "dial tcp", "dial unix", "name resolver", "produced zero addresses",
	"last connection error", "last resolver error", "error reading server preface",
	"authentication handshake failed", "x509:", "tls:",
}

// clientSafeDetail is the detail a client sees for st, and whether st's own message was withheld. Only
// the codes grpc-go gives its own failures are looked at: a client error from the server (INVALID_ARGUMENT
// about an image_url, say) is the server's message, whatever words it uses.
func clientSafeDetail(st *status.Status) (string, bool) {
	switch st.Code() {
	case codes.Unavailable, codes.Internal, codes.Unknown, codes.DeadlineExceeded, codes.Canceled:
	default:
		return st.Message(), false
	}
	msg := st.Message()
	lower := strings.ToLower(msg)
	for _, m := range grpcClientMarkers {
		if strings.Contains(lower, m) {
			return genericDetail(st.Code()), true
		}
	}
	return msg, false
}

func genericDetail(c codes.Code) string {
	switch c {
	case codes.Unavailable:
		return "the model server is unavailable; retry later"
	case codes.DeadlineExceeded:
		return "the model server did not answer in time"
	default:
		return "the gateway could not complete the call to the model server"
	}
}

// errorLogger is where the gateway writes what it withholds from clients.
func (s *Server) errorLogger() *slog.Logger {
	if s.cfg.ErrorLogger != nil {
		return s.cfg.ErrorLogger
	}
	if s.cfg.Logger != nil {
		return s.cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}
