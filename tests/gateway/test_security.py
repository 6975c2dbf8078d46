"""The gateway's security over the wire, against the real paligemma-server on the tiny bundle: each attack
of issue 12's HTTP side, reproduced on 127.0.0.1, gets its documented answer.

- GatewaySecurityTest (gateway only; any server): /v1 bodies must be JSON (the CSRF unload), CORS only for
  listed origins, idle keep-alive connections closed, slow headers cut off, truncated multipart → 400,
  Unicode-blank prompts → 400, dial errors never shown to clients, HTTPS with openssl-made certificates.
- ServerKeysTest, ModelControlOffTest, GrpcTlsTest: the server's --api_keys_file, --allow_model_control and
  --tls_cert/--tls_key/--tls_client_ca seen through the gateway (keys forwarded, 401/403 on every route,
  /metrics refused without the admin key, the gateway dialling the server over TLS and mutual TLS).

Every wait is bounded; every process binds 127.0.0.1 and is stopped."""

import base64
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import grpc
import requests

import harness
import gw_harness

USER_KEY = "user-key-0123456789abcdef"
ADMIN_KEY = "admin-key-0123456789abcdef"
BLANK_PROMPT = 'prompt is empty (e.g. "segment left wheel")'
JSON_ONLY = ": /v1 routes take a JSON body (Content-Type: application/json)."
ORIGIN = "http://app.test:3000"


def err(detail):
    return {"status": "error", "detail": detail}


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def make_pki(directory):
    """A throw-away CA (ca), an unrelated one (other), and certificates signed by ca: local (localhost,
    127.0.0.1), server (paligemma-server only), client (client auth). Made with openssl, never committed."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    def ca(name):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "1", "-subj", f"/CN={name}",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def issue(name, san, usage):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(directory, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext")

    ca("ca")
    ca("other")
    issue("local", "DNS:localhost,IP:127.0.0.1", "serverAuth")
    issue("server", "DNS:paligemma-server", "serverAuth")
    issue("client", "DNS:gateway", "clientAuth")
    return lambda name: os.path.join(directory, name)


def closed_by_peer(sock, timeout):
    """True when the other side closes sock within timeout (an answer read first is skipped)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except socket.timeout:
        return False
    except OSError:
        return True  # reset
    return False


def served_certificate(port, cafile, check_name=True):
    """The DER certificate the gateway's HTTPS port presents to a new connection."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = check_name
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.getpeercert(binary_form=True)


def raw_get(port, path="/healthz"):
    """A keep-alive HTTP/1.1 GET on a fresh socket; returns the socket after reading the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("closed before answering")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


class GatewaySecurityTest(unittest.TestCase):
    """One server and one gateway (CORS for ORIGIN, short idle and header timeouts) for the class."""

    @classmethod
    def setUpClass(cls):
        cls._dir = tempfile.mkdtemp(prefix="pg-models-")
        shutil.copytree(harness.TINY_BUNDLE, os.path.join(cls._dir, "bundles", "tiny"))
        cls.server = harness.Server(cls._dir, "--allow_private_urls")
        try:
            cls.gateway = gw_harness.Gateway(cls.server.address, "--cors_origins", ORIGIN,
                                             "--idle_timeout", "1s", "--read_header_timeout", "1s")
        except Exception:
            cls.server.stop()
            raise
        cls.image = harness.read_image()

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        cls.server.stop()
        shutil.rmtree(cls._dir, True)

    def model_state(self):
        r = requests.get(f"{self.gateway.base}/v1/models", timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        return {m["id"]: m["state"] for m in r.json()["models"]}

    def test_v1_bodies_must_be_json(self):
        """The CSRF unload: a web page's form or fetch sends text/plain, urlencoded, multipart or no type."""
        self.assertEqual(self.model_state().get("tiny"), "READY")
        body = '{"model_id": "tiny"}'
        for ct, data, detail in [
            ("text/plain", body, "Unsupported Content-Type text/plain" + JSON_ONLY),
            ("application/x-www-form-urlencoded", body, "Unsupported Content-Type application/x-www-form-urlencoded" + JSON_ONLY),
            ("multipart/form-data; boundary=x", f"--x\r\n\r\n{body}\r\n--x--\r\n",
             "Unsupported Content-Type multipart/form-data" + JSON_ONLY),
            (None, body, "Missing Content-Type" + JSON_ONLY),
            (None, "", "Missing Content-Type" + JSON_ONLY),
        ]:
            headers = {"Origin": "https://evil.example"}
            if ct:
                headers["Content-Type"] = ct
            r = requests.post(f"{self.gateway.base}/v1/models:unload", data=data.encode(), headers=headers, timeout=30)
            self.assertEqual(r.status_code, 415, r.text)
            self.assertEqual(r.json(), err(detail))
            self.assertNotIn("Access-Control-Allow-Origin", r.headers)
        self.assertEqual(self.model_state().get("tiny"), "READY", "a refused unload reached the server")
        # JSON, with parameters, is served; the form route still takes forms.
        r = requests.post(f"{self.gateway.base}/v1/segment", data=b'{"prompt": "segment cat", "image_data": ""}',
                          headers={"Content-Type": "application/json; charset=utf-8"}, timeout=60)
        self.assertEqual(r.status_code, 400, r.text)  # the server's answer: no image
        r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", self.image, "image/png")},
                          data={"prompt": "segment cat", "max_new_tokens": "8"}, timeout=120)
        self.assertEqual(r.status_code, 200, r.text)

    def test_cors_only_for_listed_origins(self):
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        r = requests.options(f"{self.gateway.base}/v1/models:unload", headers={"Origin": ORIGIN, **preflight},
                             timeout=30)
        self.assertEqual(r.status_code, 204, r.text)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], ORIGIN)
        self.assertIn("POST", r.headers["Access-Control-Allow-Methods"])
        for h in ("authorization", "content-type", "x-request-id"):
            self.assertIn(h, r.headers["Access-Control-Allow-Headers"].lower())
        self.assertTrue(int(r.headers["Access-Control-Max-Age"]) > 0)
        self.assertIn("Origin", r.headers["Vary"])
        r = requests.get(f"{self.gateway.base}/v1/models", headers={"Origin": ORIGIN}, timeout=30)
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], ORIGIN)
        for bad in ("https://evil.example", "http://app.test:3001", "http://app.test:3000.evil.example", "null"):
            for r in (requests.options(f"{self.gateway.base}/v1/models:unload", headers={"Origin": bad, **preflight},
                                       timeout=30),
                      requests.get(f"{self.gateway.base}/v1/models", headers={"Origin": bad}, timeout=30)):
                self.assertFalse([h for h in r.headers if h.lower().startswith("access-control-")], (bad, r.headers))
                self.assertNotEqual(r.status_code, 204)

    def test_idle_keep_alive_connections_are_closed(self):
        """Before: 500 of 500 idle keep-alive connections still open after 90 s. Now --idle_timeout 1s."""
        socks = [raw_get(self.gateway.port) for _ in range(100)]
        try:
            start = time.monotonic()
            still_open = sum(1 for s in socks if not closed_by_peer(s, max(0.1, 15 - (time.monotonic() - start))))
            print(f"idle connections: {100 - still_open}/100 closed by the gateway within "
                  f"{time.monotonic() - start:.1f} s (idle timeout 1 s)")
            self.assertEqual(still_open, 0)
        finally:
            for s in socks:
                s.close()

    def test_slow_headers_are_cut_off(self):
        sock = socket.create_connection(("127.0.0.1", self.gateway.port), timeout=10)
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
            start = time.monotonic()
            self.assertTrue(closed_by_peer(sock, 15), "unfinished headers held the connection for 15 s")
            print(f"slow headers: closed after {time.monotonic() - start:.1f} s (header timeout 1 s)")
        finally:
            sock.close()

    def test_truncated_multipart_is_400(self):
        head = ('--B\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nsegment cat\r\n'
                '--B\r\nContent-Disposition: form-data; name="image_file"; filename="c.png"\r\n'
                'Content-Type: image/png\r\n\r\n').encode() + self.image + b"\r\n"
        for name, body in [("inside a later part's headers", head + b'--B\r\nContent-Disposition: form-da'),
                           ("after a delimiter line", head + b"--B\r\n"),
                           ("after a part", head),
                           ("inside the file", head[:len(head) // 2])]:
            r = requests.post(f"{self.gateway.base}/segment", data=body,
                              headers={"Content-Type": "multipart/form-data; boundary=B"}, timeout=60)
            self.assertEqual(r.status_code, 400, (name, r.text[:200]))
            self.assertTrue(r.json()["detail"].startswith("Invalid form body"), (name, r.text))
        r = requests.post(f"{self.gateway.base}/segment", data=head + b"--B--\r\n",
                          headers={"Content-Type": "multipart/form-data; boundary=B"}, timeout=120)
        self.assertEqual(r.status_code, 200, r.text[:300])

    def test_unicode_blank_prompts_are_400(self):
        for ch in ["\v", "\f", "\u00a0", "\u3000", "\u200b", "\ufeff", "\u2028", "\u180e", "\u2060"]:
            for prompt in (ch, ch * 3 + " "):
                r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", self.image, "image/png")},
                                  data={"prompt": prompt}, timeout=60)
                self.assertEqual(r.status_code, 400, (repr(prompt), r.text[:200]))
                self.assertEqual(r.json(), err(BLANK_PROMPT))
        # The same detail the server gives for an ASCII-blank prompt.
        r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", self.image, "image/png")},
                          data={"prompt": "   "}, timeout=60)
        self.assertEqual(r.json(), err(BLANK_PROMPT))

    def test_dial_errors_are_not_shown(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there
        with gw_harness.Gateway(f"127.0.0.1:{port}") as gw:
            for method, path, kw in [("post", "/segment", {"data": {"prompt": "p", "image_url": "http://h/i.png"}}),
                                     ("post", "/v1/segment", {"json": {"prompt": "p", "image_url": "http://h/i.png"}}),
                                     ("get", "/v1/models", {}), ("get", "/readyz", {})]:
                r = getattr(requests, method)(f"{gw.base}{path}", headers={"X-Request-Id": f"down{path}"},
                                              timeout=30, **kw)
                self.assertEqual(r.status_code, 503, r.text)
                self.assertNotIn(str(port), r.text)
                self.assertNotIn("127.0.0.1", r.text)
                self.assertIn("the model server is unavailable; retry later", r.json()["detail"])
            log = gw.log()
        self.assertIn(f"127.0.0.1:{port}", log)  # the full error is in the gateway's log
        self.assertIn('"request_id":"down/v1/models"', log)

    def test_https(self):
        with tempfile.TemporaryDirectory(prefix="pg-pki-") as d:
            pki = make_pki(d)
            shutil.copy(pki("local.crt"), pki("served.crt"))
            shutil.copy(pki("local.key"), pki("served.key"))
            with gw_harness.Gateway(self.server.address, "--tls_cert", pki("served.crt"),
                                    "--tls_key", pki("served.key")) as gw:
                r = requests.get(f"https://localhost:{gw.port}/v1/models", verify=pki("ca.crt"), timeout=30)
                self.assertEqual(r.status_code, 200, r.text)
                self.assertIn("tiny", r.text)
                r = requests.get(f"http://localhost:{gw.port}/v1/models", timeout=30)
                self.assertEqual(r.status_code, 400)
                self.assertNotIn("tiny", r.text)
                with self.assertRaises(requests.exceptions.SSLError):
                    requests.get(f"https://localhost:{gw.port}/healthz", verify=pki("other.crt"), timeout=30)
                # Rotation: SIGHUP re-reads the certificate; new connections get the new one.
                before = served_certificate(gw.port, pki("ca.crt"))
                shutil.copy(pki("server.crt"), pki("served.crt"))  # a certificate for another name
                shutil.copy(pki("server.key"), pki("served.key"))
                gw.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while served_certificate(gw.port, pki("ca.crt"), check_name=False) == before:
                    self.assertLess(time.monotonic(), deadline, "certificate not reloaded on SIGHUP")
                    time.sleep(0.1)
                self.assertIn('"certificate reloaded"', gw.log())

    def test_bad_settings_stop_the_gateway_at_start(self):
        with tempfile.TemporaryDirectory(prefix="pg-pki-") as d:
            pki = make_pki(d)
            for args, message in [
                (("--cors_origins", "*"), "bad --cors_origins"),
                (("--cors_origins", "https://ok.example,app.example.com"), "bad --cors_origins"),
                (("--tls_cert", pki("local.crt")), "--tls_cert and --tls_key go together"),
                (("--tls_cert", pki("local.crt"), "--tls_key", pki("client.key")), "the HTTPS certificate"),
                (("--grpc_tls_cert", pki("client.crt"), "--grpc_tls_key", pki("client.key")), "need --grpc_tls_ca"),
                (("--grpc_tls_ca", pki("local.ext")), "holds no PEM certificate"),
                (("--idle_timeout", "0s"), "must be positive"),
            ]:
                with self.assertRaises(RuntimeError) as e:
                    gw_harness.Gateway(self.server.address, *args).stop()
                self.assertIn(message, str(e.exception), args)

    def test_keys_are_forwarded_and_never_logged_without_a_keys_file(self):
        """A server without a keys file serves everyone: the header passes through and is not logged."""
        r = requests.get(f"{self.gateway.base}/v1/models", headers=bearer(ADMIN_KEY), timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", self.image, "image/png")},
                          data={"prompt": "segment cat", "max_new_tokens": "8"}, headers=bearer(USER_KEY), timeout=120)
        self.assertEqual(r.status_code, 200, r.text[:300])
        for log in (self.gateway.log(), self.server.log()):
            self.assertNotIn(ADMIN_KEY, log)
            self.assertNotIn(USER_KEY, log)


class KeyedGatewayCase(unittest.TestCase):
    """A server with an API keys file (one user, one admin key) and `server_args`, a gateway in front."""
    server_args = ("--allow_model_control",)

    def setUp(self):
        self.models = harness.models_dir_with_tiny(self)
        self.keys_path = os.path.join(self.models, "api_keys")
        with open(self.keys_path, "w") as f:
            f.write(f"# test keys\nuser {USER_KEY}\nadmin {ADMIN_KEY}\n")
        os.chmod(self.keys_path, 0o600)
        self.server = harness.Server(self.models, "--api_keys_file", self.keys_path, *self.server_args)
        self.addCleanup(self.server.stop)
        self.gateway = gw_harness.Gateway(self.server.address)
        self.addCleanup(self.gateway.stop)
        self.image = harness.read_image()

    def tearDown(self):
        for log in (self.gateway.log(), self.server.log()):
            for key in (USER_KEY, ADMIN_KEY):
                self.assertNotIn(key, log)

    def routes(self):
        """(name, method, path, kwargs, admin only) for every route that calls the server."""
        return [
            ("form segment", "post", "/segment",
             {"files": {"image_file": ("c.png", self.image, "image/png")}, "data": {"prompt": "segment cat",
                                                                                   "max_new_tokens": "8"}}, False),
            ("v1 segment", "post", "/v1/segment", {"json": {"prompt": "segment cat", "max_new_tokens": 8,
                                                            "image_data": base64.b64encode(self.image).decode()}}, False),
            ("v1 models", "get", "/v1/models", {}, False),
            ("v1 stats", "get", "/v1/stats", {}, True),
            ("metrics", "get", "/metrics", {}, True),
        ]


class ServerKeysTest(KeyedGatewayCase):
    def test_every_route_needs_a_key(self):
        for name, method, path, kw, _ in self.routes():
            for headers in ({}, bearer("not-a-key-0123456789abcdef"), {"Authorization": f"Basic {USER_KEY}"}):
                r = getattr(requests, method)(f"{self.gateway.base}{path}", headers=headers, timeout=120, **kw)
                self.assertEqual(r.status_code, 401, (name, headers, r.text))
                self.assertEqual(r.headers.get("WWW-Authenticate"), "Bearer", name)
                self.assertEqual(set(r.json()), {"status", "detail"}, name)
                self.assertNotIn("paligemma_gateway_", r.text)

    def test_roles(self):
        for name, method, path, kw, admin_only in self.routes():
            r = getattr(requests, method)(f"{self.gateway.base}{path}", headers=bearer(USER_KEY), timeout=120, **kw)
            self.assertEqual(r.status_code, 403 if admin_only else 200, (name, r.text[:300]))
            r = getattr(requests, method)(f"{self.gateway.base}{path}", headers=bearer(ADMIN_KEY), timeout=120, **kw)
            self.assertEqual(r.status_code, 200, (name, r.text[:300]))
            if name == "metrics":
                self.assertIn("paligemma_server_up 1", r.text)
        r = requests.post(f"{self.gateway.base}/v1/models:unload", json={"model_id": "tiny"},
                          headers=bearer(USER_KEY), timeout=30)
        self.assertEqual(r.status_code, 403, r.text)
        r = requests.post(f"{self.gateway.base}/v1/models:unload", json={"model_id": "tiny"},
                          headers=bearer(ADMIN_KEY), timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        r = requests.post(f"{self.gateway.base}/v1/models:load", json={"model_id": "tiny"},
                          headers=bearer(ADMIN_KEY), timeout=120)
        self.assertEqual(r.status_code, 200, r.text)

    def test_health_and_discovery_stay_open(self):
        for path in ("/readyz", "/healthz", "/", "/openapi.json", "/docs"):
            r = requests.get(f"{self.gateway.base}{path}", timeout=30)
            self.assertEqual(r.status_code, 200, (path, r.text[:200]))


class ModelControlOffTest(KeyedGatewayCase):
    server_args = ()

    def test_load_and_unload_are_403_even_for_admin(self):
        for path in ("/v1/models:unload", "/v1/models:load"):
            r = requests.post(f"{self.gateway.base}{path}", json={"model_id": "tiny"}, headers=bearer(ADMIN_KEY),
                              timeout=60)
            self.assertEqual(r.status_code, 403, (path, r.text))
            self.assertEqual(r.json()["status"], "error")


class GrpcTlsTest(unittest.TestCase):
    """The gateway dials a server that has --tls_cert/--tls_key (and --tls_client_ca) over TLS."""

    def setUp(self):
        d = tempfile.mkdtemp(prefix="pg-pki-")
        self.addCleanup(shutil.rmtree, d, True)
        self.pki = make_pki(d)
        self.models = harness.models_dir_with_tiny(self)

    def read(self, name):
        with open(self.pki(name), "rb") as f:
            return f.read()

    def start_server(self, *extra, client=False):
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.read("ca.crt"),
            private_key=self.read("client.key") if client else None,
            certificate_chain=self.read("client.crt") if client else None)
        server = harness.Server(self.models, "--tls_cert", self.pki("server.crt"), "--tls_key", self.pki("server.key"),
                                *extra, channel_credentials=creds,
                                channel_options=(("grpc.ssl_target_name_override", "paligemma-server"),))
        self.addCleanup(server.stop)
        return server

    def models_via(self, server, *args):
        with gw_harness.Gateway(server.address, "--grpc_tls_ca", self.pki("ca.crt"),
                                "--grpc_tls_server_name", "paligemma-server", *args) as gw:
            return requests.get(f"{gw.base}/v1/models", timeout=30)

    def test_tls(self):
        server = self.start_server()
        r = self.models_via(server)
        self.assertEqual(r.status_code, 200, r.text)
        with gw_harness.Gateway(server.address) as gw:  # plaintext to a TLS server
            self.assertEqual(requests.get(f"{gw.base}/v1/models", timeout=30).status_code, 503)
        with gw_harness.Gateway(server.address, "--grpc_tls_ca", self.pki("other.crt"),
                                "--grpc_tls_server_name", "paligemma-server") as gw:
            r = requests.get(f"{gw.base}/v1/models", timeout=30)
            self.assertEqual(r.status_code, 503)
            self.assertNotIn("x509", r.text)

    def test_mutual_tls(self):
        server = self.start_server("--tls_client_ca", self.pki("ca.crt"), client=True)
        r = self.models_via(server, "--grpc_tls_cert", self.pki("client.crt"), "--grpc_tls_key", self.pki("client.key"))
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(self.models_via(server).status_code, 503)  # no client certificate


if __name__ == "__main__":
    unittest.main()
