package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// serveGateway serves a gateway (over e's fake backend) with NewHTTPServer's settings on 127.0.0.1 and
// returns its address.
func serveGateway(t *testing.T, e *env, o HTTPOptions) (string, *HTTPServer) {
	t.Helper()
	gw := e.gatewayOn(nil, DefaultConfig())
	if o.ErrorLog == nil {
		o.ErrorLog = NewJSONLogger(logWriter{e})
	}
	srv, err := NewHTTPServer(gw, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// closedWithin reports whether the server closes conn (EOF or reset) within d; what it reads first
// (an answer) is skipped.
func closedWithin(conn net.Conn, d time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// Before, the gateway never closed idle keep-alive connections (500 of 500 still open after 90 s). Now
// --idle_timeout closes them: 50 connections that each served one request and then sat idle are all
// closed by the server, and a connection that keeps sending requests is not.
func TestIdleKeepAliveConnectionsClosed(t *testing.T) {
	e := newEnv(t, nil)
	addr, _ := serveGateway(t, e, HTTPOptions{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 400 * time.Millisecond})
	const n = 50
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 || resp.Close {
			t.Fatalf("conn %d: %v %v", i, err, resp)
		}
		resp.Body.Close()
		conns[i] = c
	}
	start := time.Now()
	var wg sync.WaitGroup
	closed := make([]bool, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			closed[i] = closedWithin(c, 10*time.Second)
		}()
	}
	wg.Wait()
	open := 0
	for _, ok := range closed {
		if !ok {
			open++
		}
	}
	t.Logf("%d idle connections closed by the server after %v", n-open, time.Since(start).Round(time.Millisecond))
	if open != 0 {
		t.Fatalf("%d of %d idle keep-alive connections still open after 10 s (idle timeout 400 ms)", open, n)
	}
	// A busy connection stays: requests every 100 ms for 1.2 s, all on the same connection.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 12; i++ {
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("busy connection closed at request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

// A client that sends its headers slowly (or never finishes them) is cut off after --read_header_timeout.
func TestSlowHeadersCutOff(t *testing.T) {
	e := newEnv(t, nil)
	addr, _ := serveGateway(t, e, HTTPOptions{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
	if !closedWithin(c, 10*time.Second) {
		t.Fatal("a connection with unfinished headers is still open after 10 s (header timeout 300 ms)")
	}
	t.Logf("closed after %v", time.Since(start).Round(time.Millisecond))
}

func TestHTTPOptionsChecked(t *testing.T) {
	h := http.NotFoundHandler()
	def := DefaultHTTPOptions()
	if def.ReadHeaderTimeout != 10*time.Second || def.IdleTimeout != 120*time.Second {
		t.Fatalf("defaults %+v", def)
	}
	srv, err := NewHTTPServer(h, def)
	if err != nil || srv.ReadHeaderTimeout != def.ReadHeaderTimeout || srv.IdleTimeout != def.IdleTimeout || srv.TLSConfig != nil {
		t.Fatalf("%v %+v", err, srv)
	}
	for name, o := range map[string]HTTPOptions{
		"no header timeout": {IdleTimeout: time.Second},
		"no idle timeout":   {ReadHeaderTimeout: time.Second},
		"cert without key":  {ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, TLSCert: "c.pem"},
		"missing files":     {ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem"},
	} {
		if _, err := NewHTTPServer(h, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
