// paligemma-gateway: the REST gateway in front of paligemma-server (see docs/gateway.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/paligemma-serve/paligemma-serve/gateway/internal/gateway"
)

// logger writes one JSON object per line on stderr (the access log and everything else).
var logger = gateway.NewJSONLogger(os.Stderr)

// fatal logs msg at error level and exits 1.
func fatal(msg string, args ...any) {
	logger.Error(msg, args...)
	os.Exit(1)
}

// env returns the environment's value for key, or def.
func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

func envInt64(key string, def int64) int64 {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
		fatal("environment variable is not an integer", "name", key, "value", v)
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fatal("environment variable is not a duration (e.g. 300s)", "name", key, "value", v)
		}
		return d
	}
	return def
}

func main() {
	def := gateway.DefaultConfig()
	endpoint := flag.String("grpc_endpoint", env("GRPC_ENDPOINT", "localhost:50051"),
		"paligemma-server address host:port (resolved with DNS, every address used round-robin) [GRPC_ENDPOINT]")
	host := flag.String("host", env("HOST", "0.0.0.0"), "listen address [HOST]")
	port := flag.Int("port", int(envInt64("PORT", 8000)), "listen port; 0 picks a free one [PORT]")
	maxBody := flag.Int64("max_body_bytes", envInt64("MAX_BODY_BYTES", def.MaxBodyBytes),
		"request body limit; larger requests get 413 [MAX_BODY_BYTES]")
	timeout := flag.Duration("request_timeout", envDuration("REQUEST_TIMEOUT", def.RequestTimeout),
		"per-request time limit, sent as the gRPC deadline; 0 for none [REQUEST_TIMEOUT]")
	readyTimeout := flag.Duration("ready_timeout", envDuration("READY_TIMEOUT", def.ReadyTimeout),
		"time limit of the /readyz health check [READY_TIMEOUT]")
	drain := flag.Duration("shutdown_timeout", envDuration("SHUTDOWN_TIMEOUT", 30*time.Second),
		"SIGTERM: time in-flight requests get to finish [SHUTDOWN_TIMEOUT]")
	accessLog := flag.Bool("access_log", env("ACCESS_LOG", "true") != "false",
		"one JSON stderr line per request [ACCESS_LOG]")
	metricsTimeout := flag.Duration("metrics_timeout", envDuration("METRICS_TIMEOUT", def.MetricsTimeout),
		"time limit of the GetStats call each /metrics scrape makes [METRICS_TIMEOUT]")
	httpDef := gateway.DefaultHTTPOptions()
	readHeaderTimeout := flag.Duration("read_header_timeout",
		envDuration("READ_HEADER_TIMEOUT", httpDef.ReadHeaderTimeout),
		"time a client gets to send a request's headers [READ_HEADER_TIMEOUT]")
	idleTimeout := flag.Duration("idle_timeout", envDuration("IDLE_TIMEOUT", httpDef.IdleTimeout),
		"idle keep-alive connections are closed after this long [IDLE_TIMEOUT]")
	corsOrigins := flag.String("cors_origins", env("CORS_ORIGINS", ""),
		"comma-separated exact origins (https://app.example.com) whose scripts may call the gateway; "+
			"empty: no CORS headers [CORS_ORIGINS]")
	tlsCert := flag.String("tls_cert", env("TLS_CERT", ""), "PEM certificate chain: serve HTTPS [TLS_CERT]")
	tlsKey := flag.String("tls_key", env("TLS_KEY", ""), "PEM private key of --tls_cert [TLS_KEY]")
	grpcCA := flag.String("grpc_tls_ca", env("GRPC_TLS_CA", ""),
		"PEM CA certificate(s): dial the server over TLS, verifying its certificate with these [GRPC_TLS_CA]")
	grpcServerName := flag.String("grpc_tls_server_name", env("GRPC_TLS_SERVER_NAME", ""),
		"name the server's certificate must carry (default: the endpoint's host) [GRPC_TLS_SERVER_NAME]")
	grpcCert := flag.String("grpc_tls_cert", env("GRPC_TLS_CERT", ""),
		"PEM client certificate for a server that requires one (mutual TLS) [GRPC_TLS_CERT]")
	grpcKey := flag.String("grpc_tls_key", env("GRPC_TLS_KEY", ""), "PEM private key of --grpc_tls_cert [GRPC_TLS_KEY]")
	flag.Parse()

	origins, err := gateway.ParseCORSOrigins(*corsOrigins)
	if err != nil {
		fatal("bad --cors_origins", "error", err.Error())
	}
	grpcTLS, grpcCerts, err := gateway.ClientTLS(gateway.GRPCTLS{CA: *grpcCA, ServerName: *grpcServerName,
		Cert: *grpcCert, Key: *grpcKey})
	if err != nil {
		fatal("bad gRPC TLS settings", "error", err.Error())
	}
	conn, err := gateway.Dial(*endpoint, grpcTLS)
	if err != nil {
		fatal("bad grpc endpoint", "endpoint", *endpoint, "error", err.Error())
	}
	defer conn.Close()
	cfg := gateway.Config{MaxBodyBytes: *maxBody, RequestTimeout: *timeout, ReadyTimeout: *readyTimeout,
		MetricsTimeout: *metricsTimeout, ErrorLogger: logger, CORSOrigins: origins}
	if *accessLog {
		cfg.Logger = logger
	}
	handler, err := gateway.New(cfg, conn)
	if err != nil {
		fatal("cannot build the gateway", "error", err.Error())
	}
	srv, err := gateway.NewHTTPServer(handler, gateway.HTTPOptions{ReadHeaderTimeout: *readHeaderTimeout,
		IdleTimeout: *idleTimeout, TLSCert: *tlsCert, TLSKey: *tlsKey, ErrorLog: logger})
	if err != nil {
		fatal("bad HTTP server settings", "error", err.Error())
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		fatal("cannot listen", "error", err.Error())
	}
	actual := ln.Addr().(*net.TCPAddr).Port
	// Tests and scripts read this line to find the port (the gRPC server prints the same form).
	fmt.Printf("listening on %s\n", net.JoinHostPort(*host, strconv.Itoa(actual)))
	os.Stdout.Sync()
	logger.Info("serving", "address", ln.Addr().String(), "backend", *endpoint,
		"target", gateway.Target(*endpoint), "https", srv.TLSConfig != nil, "grpc_tls", grpcTLS != nil,
		"cors_origins", len(origins))

	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for {
		select {
		case err := <-done:
			if !errors.Is(err, http.ErrServerClosed) {
				fatal("serve failed", "error", err.Error())
			}
			return
		case <-hup:
			// Rotated certificates: new connections use the re-read ones; a failed re-read keeps the old.
			reloadCerts(map[string]*gateway.CertFiles{"https": srv.Certs, "grpc_client": grpcCerts})
		case s := <-sig:
			logger.Info("draining", "signal", s.String(), "timeout", drain.String())
			ctx, cancel := context.WithTimeout(context.Background(), *drain)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				logger.Error("shutdown", "error", err.Error())
			}
			return
		}
	}
}

// reloadCerts re-reads each configured certificate and logs the outcome.
func reloadCerts(certs map[string]*gateway.CertFiles) {
	for name, c := range certs {
		if c == nil {
			continue
		}
		if err := c.Reload(); err != nil {
			logger.Error("certificate not reloaded; the previous one stays in use", "certificate", name,
				"error", err.Error())
			continue
		}
		logger.Info("certificate reloaded", "certificate", name)
	}
}
