package gateway

import (
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Target turns --grpc_endpoint into a gRPC target: "host:port" becomes "dns:///host:port" so that every
// address the name resolves to (several server replicas) is used; explicit schemes pass through.
func Target(endpoint string) string {
	if strings.Contains(endpoint, ":///") || strings.HasPrefix(endpoint, "unix:") {
		return endpoint
	}
	return "dns:///" + endpoint
}

// Dial connects (lazily) to the gRPC server(s): round_robin over the resolved addresses, reconnection
// backoff capped at 2 s so the gateway recovers quickly when a server comes back, and message limits
// large enough for 25 MB images and full-size masks.
func Dial(endpoint string) (*grpc.ClientConn, error) {
	return grpc.NewClient(Target(endpoint),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
}
