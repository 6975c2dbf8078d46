package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
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

// GRPCTLS is how the gateway dials the server over TLS: CA (PEM) verifies the server's certificate;
// ServerName overrides the name checked (default: the endpoint's host); Cert/Key (PEM) are the gateway's
// client certificate for a server that requires one (mutual TLS).
type GRPCTLS struct {
	CA, ServerName, Cert, Key string
}

// ClientTLS is the tls.Config of o, nil (plaintext) when o names no CA, and the gateway's client
// certificate when o has one (Reload re-reads it; the CA is read once).
func ClientTLS(o GRPCTLS) (*tls.Config, *CertFiles, error) {
	if o.CA == "" {
		if o.Cert != "" || o.Key != "" || o.ServerName != "" {
			return nil, nil, errors.New("--grpc_tls_cert, --grpc_tls_key and --grpc_tls_server_name need --grpc_tls_ca")
		}
		return nil, nil, nil
	}
	pem, err := os.ReadFile(o.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the gRPC CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate", o.CA)
	}
	conf := &tls.Config{RootCAs: roots, ServerName: o.ServerName, MinVersion: tls.VersionTLS12}
	if (o.Cert == "") != (o.Key == "") {
		return nil, nil, errors.New("--grpc_tls_cert and --grpc_tls_key go together")
	}
	var certs *CertFiles
	if o.Cert != "" {
		if certs, err = LoadCertFiles(o.Cert, o.Key); err != nil {
			return nil, nil, fmt.Errorf("the gateway's client certificate: %w", err)
		}
		conf.GetClientCertificate = certs.clientCertificate
	}
	return conf, certs, nil
}

// Dial connects (lazily) to the gRPC server(s): round_robin over the resolved addresses, reconnection
// backoff capped at 2 s so the gateway recovers quickly when a server comes back, and message limits
// large enough for 25 MB images and full-size masks. tlsConf nil dials in plaintext.
func Dial(endpoint string, tlsConf *tls.Config) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	return grpc.NewClient(Target(endpoint),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(512<<20), grpc.MaxCallSendMsgSize(64<<20)),
	)
}
