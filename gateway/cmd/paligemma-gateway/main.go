// paligemma-gateway: the REST gateway in front of paligemma-server (see docs/gateway.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/paligemma-serve/paligemma-serve/gateway/internal/gateway"
)

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
		log.Fatalf("%s=%q is not an integer", key, v)
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Fatalf("%s=%q is not a duration (e.g. 300s)", key, v)
		}
		return d
	}
	return def
}

func main() {
	log.SetFlags(0)
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
		"one stderr line per request [ACCESS_LOG]")
	flag.Parse()

	conn, err := gateway.Dial(*endpoint)
	if err != nil {
		log.Fatalf("paligemma-gateway: grpc endpoint %q: %v", *endpoint, err)
	}
	defer conn.Close()
	cfg := gateway.Config{MaxBodyBytes: *maxBody, RequestTimeout: *timeout, ReadyTimeout: *readyTimeout}
	if *accessLog {
		logger := log.New(os.Stderr, "", 0)
		cfg.AccessLog = func(line string) { logger.Println(line) }
	}
	handler, err := gateway.New(cfg, conn)
	if err != nil {
		log.Fatalf("paligemma-gateway: %v", err)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(*host, strconv.Itoa(*port)))
	if err != nil {
		log.Fatalf("paligemma-gateway: listen: %v", err)
	}
	actual := ln.Addr().(*net.TCPAddr).Port
	// Tests and scripts read this line to find the port (the gRPC server prints the same form).
	fmt.Printf("listening on %s\n", net.JoinHostPort(*host, strconv.Itoa(actual)))
	os.Stdout.Sync()
	log.Printf("paligemma-gateway: serving HTTP on %s, backend %s (%s)", ln.Addr(), *endpoint,
		gateway.Target(*endpoint))

	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 30 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-done:
		if !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("paligemma-gateway: %v", err)
		}
	case s := <-sig:
		log.Printf("paligemma-gateway: %v, draining for up to %v", s, *drain)
		ctx, cancel := context.WithTimeout(context.Background(), *drain)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("paligemma-gateway: shutdown: %v", err)
		}
	}
}
