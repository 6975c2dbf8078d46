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
	flag.Parse()

	conn, err := gateway.Dial(*endpoint)
	if err != nil {
		fatal("bad grpc endpoint", "endpoint", *endpoint, "error", err.Error())
	}
	defer conn.Close()
	cfg := gateway.Config{MaxBodyBytes: *maxBody, RequestTimeout: *timeout, ReadyTimeout: *readyTimeout,
		MetricsTimeout: *metricsTimeout}
	if *accessLog {
		cfg.Logger = logger
	}
	handler, err := gateway.New(cfg, conn)
	if err != nil {
		fatal("cannot build the gateway", "error", err.Error())
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
		"target", gateway.Target(*endpoint))

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			fatal("serve failed", "error", err.Error())
		}
	case s := <-sig:
		logger.Info("draining", "signal", s.String(), "timeout", drain.String())
		ctx, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			logger.Error("shutdown", "error", err.Error())
		}
	}
}
