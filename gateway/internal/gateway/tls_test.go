package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// pki is a throw-away CA with certificates made by openssl for one test (nothing is committed).
type pki struct {
	dir string
	t   *testing.T
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

func (p pki) openssl(args ...string) {
	p.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newCA makes NAME.crt/NAME.key, a self-signed CA.
func (p pki) newCA(name string) {
	p.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", name+".key", "-out", name+".crt", "-days", "1", "-subj", "/CN="+name,
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
}

// issue makes NAME.crt/NAME.key signed by ca, with the given subjectAltName and extendedKeyUsage.
func (p pki) issue(ca, name, san, usage string) {
	p.openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+name)
	ext := "subjectAltName=" + san + "\nextendedKeyUsage=" + usage + "\nbasicConstraints=CA:FALSE\n"
	if err := os.WriteFile(p.path(name+".ext"), []byte(ext), 0o600); err != nil {
		p.t.Fatal(err)
	}
	p.openssl("x509", "-req", "-in", name+".csr", "-CA", ca+".crt", "-CAkey", ca+".key", "-CAcreateserial",
		"-out", name+".crt", "-days", "1", "-extfile", name+".ext")
}

// newPKI: ca signs server (paligemma-server only), local (localhost, 127.0.0.1) and client (the
// gateway's client certificate); other is an unrelated CA.
func newPKI(t *testing.T) pki {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is needed to make the test certificates (apt-get install openssl)")
	}
	p := pki{dir: t.TempDir(), t: t}
	p.newCA("ca")
	p.newCA("other")
	p.issue("ca", "server", "DNS:paligemma-server", "serverAuth")
	p.issue("ca", "local", "DNS:localhost,IP:127.0.0.1", "serverAuth")
	p.issue("ca", "client", "DNS:gateway", "clientAuth")
	return p
}

func (p pki) pool(name string) *x509.CertPool {
	p.t.Helper()
	pem, err := os.ReadFile(p.path(name + ".crt"))
	if err != nil {
		p.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		p.t.Fatal("bad PEM")
	}
	return pool
}

func (p pki) pair(name string) tls.Certificate {
	p.t.Helper()
	c, err := tls.LoadX509KeyPair(p.path(name+".crt"), p.path(name+".key"))
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// tlsBackend starts the fake server behind TLS with cert; clientCA non-nil requires client certificates.
func tlsBackend(t *testing.T, p pki, cert string, clientCA *x509.CertPool) *env {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{p.pair(cert)}, MinVersion: tls.VersionTLS12}
	if clientCA != nil {
		conf.ClientCAs, conf.ClientAuth = clientCA, tls.RequireAndVerifyClientCert
	}
	e := &env{t: t, fake: &fakeBackend{ctxErrSet: make(chan struct{}), resp: sampleResponse()}, addr: lis.Addr().String()}
	e.grpcSrv, e.health = startBackend(t, lis, e.fake, grpc.Creds(credentials.NewTLS(conf)))
	return e
}

// gatewayOver starts a gateway (httptest, plain HTTP) that dials e's backend with o.
func (e *env) gatewayOver(o GRPCTLS) {
	e.t.Helper()
	conf, _, err := ClientTLS(o)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Logger = NewJSONLogger(logWriter{e})
	cfg.ReadyTimeout = 5 * time.Second
	gw := e.gatewayOn(conf, cfg)
	e.http = httpTestServer(e.t, gw)
}

// The gateway dials the server over TLS: it verifies the server's certificate against --grpc_tls_ca and
// the name (the endpoint's host, or --grpc_tls_server_name); a wrong CA or name fails closed (503, with
// the handshake's details only in the log).
func TestGRPCOverTLS(t *testing.T) {
	p := newPKI(t)
	for _, c := range []struct {
		name string
		cert string
		o    GRPCTLS
		ok   bool
	}{
		{"right CA, IP in the certificate", "local", GRPCTLS{CA: p.path("ca.crt")}, true},
		{"right CA, name override", "server", GRPCTLS{CA: p.path("ca.crt"), ServerName: "paligemma-server"}, true},
		{"right CA, name not in the certificate", "server", GRPCTLS{CA: p.path("ca.crt")}, false},
		{"wrong CA", "local", GRPCTLS{CA: p.path("other.crt")}, false},
		{"plaintext to a TLS server", "local", GRPCTLS{}, false},
	} {
		e := tlsBackend(t, p, c.cert, nil)
		e.gatewayOver(c.o)
		r := e.get("/v1/models")
		ready := e.get("/readyz")
		if c.ok && (r.code != 200 || ready.code != 200) {
			t.Errorf("%s: %d %s / readyz %d %s", c.name, r.code, r.body, ready.code, ready.body)
		}
		if !c.ok {
			if r.code != 503 || string(r.body) != errJSON("the model server is unavailable; retry later") {
				t.Errorf("%s: %d %s", c.name, r.code, r.body)
			}
			if ready.code != 503 {
				t.Errorf("%s: readyz %d", c.name, ready.code)
			}
		}
	}
}

// Mutual TLS: a server that requires a client certificate takes the gateway's (--grpc_tls_cert/key) and
// refuses a gateway without one.
func TestGRPCMutualTLS(t *testing.T) {
	p := newPKI(t)
	e := tlsBackend(t, p, "local", p.pool("ca"))
	e.gatewayOver(GRPCTLS{CA: p.path("ca.crt"), Cert: p.path("client.crt"), Key: p.path("client.key")})
	if r := e.get("/v1/models"); r.code != 200 {
		t.Fatalf("with the client certificate: %d %s", r.code, r.body)
	}
	e2 := tlsBackend(t, p, "local", p.pool("ca"))
	e2.gatewayOver(GRPCTLS{CA: p.path("ca.crt")})
	if r := e2.get("/v1/models"); r.code != 503 {
		t.Fatalf("without a client certificate: %d %s", r.code, r.body)
	}
	// A client certificate from another CA is refused too.
	p.issue("other", "stranger", "DNS:gateway", "clientAuth")
	e3 := tlsBackend(t, p, "local", p.pool("ca"))
	e3.gatewayOver(GRPCTLS{CA: p.path("ca.crt"), Cert: p.path("stranger.crt"), Key: p.path("stranger.key")})
	if r := e3.get("/v1/models"); r.code != 503 {
		t.Fatalf("with a stranger's certificate: %d %s", r.code, r.body)
	}
}

func TestClientTLSChecked(t *testing.T) {
	p := newPKI(t)
	if conf, certs, err := ClientTLS(GRPCTLS{}); conf != nil || certs != nil || err != nil {
		t.Fatalf("no CA: %v %v %v", conf, certs, err)
	}
	for name, o := range map[string]GRPCTLS{
		"cert without CA":        {Cert: p.path("client.crt"), Key: p.path("client.key")},
		"server name without CA": {ServerName: "x"},
		"cert without key":       {CA: p.path("ca.crt"), Cert: p.path("client.crt")},
		"missing CA file":        {CA: p.path("nope.crt")},
		"CA file not PEM":        {CA: p.path("client.ext")},
		"key of another cert":    {CA: p.path("ca.crt"), Cert: p.path("client.crt"), Key: p.path("local.key")},
	} {
		if _, _, err := ClientTLS(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// --tls_cert/--tls_key: the gateway serves HTTPS; a plain-HTTP request to that port gets net/http's 400
// and never reaches a route; a client that does not trust the certificate's CA cannot connect.
func TestHTTPSServed(t *testing.T) {
	p := newPKI(t)
	e := newEnv(t, nil)
	o := DefaultHTTPOptions()
	o.TLSCert, o.TLSKey = p.path("local.crt"), p.path("local.key")
	addr, srv := serveGateway(t, e, o)
	if srv.TLSConfig == nil || srv.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS config %+v", srv.TLSConfig)
	}
	trusted := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool("ca")}, ForceAttemptHTTP2: true}}
	resp, err := trusted.Get("https://" + addr + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || !strings.Contains(string(body), "tiny") {
		t.Fatalf("https: %d %s", resp.StatusCode, body)
	}
	t.Logf("https answered over %s", resp.Proto)
	plain := &http.Client{Timeout: 10 * time.Second}
	resp, err = plain.Get("http://" + addr + "/v1/models")
	if err != nil {
		t.Fatalf("plain HTTP to the HTTPS port: %v (want net/http's 400)", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || strings.Contains(string(body), "tiny") {
		t.Fatalf("plain HTTP to the HTTPS port: %d %s", resp.StatusCode, body)
	}
	untrusted := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.pool("other")}}}
	if resp, err := untrusted.Get("https://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a client trusting another CA connected")
	}
	// net/http's handshake messages are JSON log lines like the rest.
	found := false
	for _, l := range e.accessLog() {
		if l["level"] == "warn" && strings.Contains(l["msg"].(string), "HTTP request to an HTTPS server") {
			found = true
		}
	}
	if !found {
		t.Errorf("handshake error not logged as JSON: %v", e.logs)
	}
}

// copyPair puts the certificate and key of from where to's are (a rotation, as cert-manager does it).
func (p pki) copyPair(from, to string) {
	p.t.Helper()
	for _, ext := range []string{".crt", ".key"} {
		b, err := os.ReadFile(p.path(from + ext))
		if err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(p.path(to+ext), b, 0o600); err != nil {
			p.t.Fatal(err)
		}
	}
}

func servedSerial(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// A rotated HTTPS certificate is served to new connections after Reload (SIGHUP); a reload that fails
// (a half-written file) keeps the previous certificate.
func TestHTTPSCertificateReload(t *testing.T) {
	p := newPKI(t)
	p.issue("ca", "local2", "DNS:localhost,IP:127.0.0.1", "serverAuth")
	p.copyPair("local", "served")
	e := newEnv(t, nil)
	o := DefaultHTTPOptions()
	o.TLSCert, o.TLSKey = p.path("served.crt"), p.path("served.key")
	addr, srv := serveGateway(t, e, o)
	roots := p.pool("ca")
	before := servedSerial(t, addr, roots)
	p.copyPair("local2", "served")
	if got := servedSerial(t, addr, roots); got != before {
		t.Fatal("certificate changed without a reload")
	}
	if err := srv.Certs.Reload(); err != nil {
		t.Fatal(err)
	}
	after := servedSerial(t, addr, roots)
	if after == before {
		t.Fatal("the rotated certificate is not served after Reload")
	}
	if err := os.WriteFile(p.path("served.crt"), []byte("-----BEGIN CERTIFICATE-----\nhalf"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srv.Certs.Reload(); err == nil {
		t.Fatal("a broken certificate file reloaded")
	}
	if got := servedSerial(t, addr, roots); got != after {
		t.Fatal("a failed reload changed the certificate served")
	}
}

// The gateway's client certificate for mutual TLS is re-read by Reload too: a gateway holding a refused
// certificate recovers once the right one is in place and reloaded, without a restart.
func TestGRPCClientCertificateReload(t *testing.T) {
	p := newPKI(t)
	p.issue("other", "stranger", "DNS:gateway", "clientAuth")
	p.copyPair("stranger", "mine")
	e := tlsBackend(t, p, "local", p.pool("ca"))
	conf, certs, err := ClientTLS(GRPCTLS{CA: p.path("ca.crt"), Cert: p.path("mine.crt"), Key: p.path("mine.key")})
	if err != nil || certs == nil {
		t.Fatal(err)
	}
	gw := e.gatewayOn(conf, DefaultConfig())
	e.http = httpTestServer(t, gw)
	if r := e.get("/v1/models"); r.code != 503 {
		t.Fatalf("with a stranger's certificate: %d %s", r.code, r.body)
	}
	p.copyPair("client", "mine")
	if err := certs.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.get("/v1/models")
		if r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the reload: %d %s", r.code, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
