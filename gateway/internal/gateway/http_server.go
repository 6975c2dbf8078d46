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

// NewHTTPServer is the http.Server that serves h with o's limits and, when o has a certificate, TLS.
func NewHTTPServer(h http.Handler, o HTTPOptions) (*http.Server, error) {
	if o.ReadHeaderTimeout <= 0 || o.IdleTimeout <= 0 {
		return nil, errors.New("--read_header_timeout and --idle_timeout must be positive")
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: o.ReadHeaderTimeout, IdleTimeout: o.IdleTimeout}
	if o.ErrorLog != nil {
		srv.ErrorLog = slog.NewLogLogger(o.ErrorLog.Handler(), slog.LevelWarn)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return nil, errors.New("--tls_cert and --tls_key go together")
	}
	if o.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("loading the HTTPS certificate: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return srv, nil
}

// Serve serves srv on ln, over TLS when NewHTTPServer gave it a certificate. A plain-HTTP request to a
// TLS listener gets net/http's 400 "Client sent an HTTP request to an HTTPS server" and nothing else.
func Serve(srv *http.Server, ln net.Listener) error {
	if srv.TLSConfig != nil {
		return srv.ServeTLS(ln, "", "")
	}
	return srv.Serve(ln)
}
