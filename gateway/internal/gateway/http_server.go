package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// HTTPOptions are the listener-side settings of the gateway's http.Server.
type HTTPOptions struct {
	// ReadHeaderTimeout bounds the time a client may take to send a request's headers (slow-header
	// clients otherwise hold a connection and a goroutine forever).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections that carry no request for this long.
	IdleTimeout time.Duration
	// TLSCert, TLSKey (PEM files): serve HTTPS; both or neither.
	TLSCert, TLSKey string
	// ErrorLog receives net/http's own messages (TLS handshake failures, accept errors) as warnings, so
	// they are JSON lines like the rest; nil leaves net/http's default (the standard logger).
	ErrorLog *slog.Logger
}

// DefaultHTTPOptions: 10 s for headers, 120 s idle.
func DefaultHTTPOptions() HTTPOptions {
	return HTTPOptions{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
}

// HTTPServer is the gateway's http.Server and, when it serves HTTPS, its certificate (Certs.Reload
// re-reads it).
type HTTPServer struct {
	*http.Server
	Certs *CertFiles
}

// NewHTTPServer is the server that serves h with o's limits and, when o has a certificate, TLS.
func NewHTTPServer(h http.Handler, o HTTPOptions) (*HTTPServer, error) {
	if o.ReadHeaderTimeout <= 0 || o.IdleTimeout <= 0 {
		return nil, errors.New("--read_header_timeout and --idle_timeout must be positive")
	}
	srv := &HTTPServer{Server: &http.Server{Handler: h, ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout: o.IdleTimeout}}
	if o.ErrorLog != nil {
		srv.ErrorLog = slog.NewLogLogger(o.ErrorLog.Handler(), slog.LevelWarn)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("--tls_cert and --tls_key go together")
	}
	if o.TLSCert != "" {
		certs, err := LoadCertFiles(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("the HTTPS certificate: %w", err)
		}
		srv.Certs = certs
		srv.TLSConfig = &tls.Config{GetCertificate: certs.serverCertificate, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
}

// Serve serves on ln, over TLS when NewHTTPServer gave the server a certificate. A plain-HTTP request to
// a TLS listener gets net/http's 400 "Client sent an HTTP request to an HTTPS server" and nothing else.
func (s *HTTPServer) Serve(ln net.Listener) error {
	if s.TLSConfig != nil {
		return s.ServeTLS(ln, "", "")
	}
	return s.Server.Serve(ln)
}
