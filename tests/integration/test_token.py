"""The Hugging Face token (issue 7): given by file and by HF_TOKEN, it is sent as "Authorization: Bearer" to the
Hub's own host only - not to another host a redirect leads to (the Hub sends LFS files to its CDN) - and it
appears in no server stdout/stderr line and no gRPC error message, whatever way the download fails: 401,
403, 404, 500, connection refused, redirects to another host or name, and a hub that echoes the
Authorization header back in its error bodies."""

import os
import secrets
import shutil
import tempfile
import threading
import unittest

import grpc

import harness
from fake_hub import COMMIT, FakeHub

TINY_CKPT = os.path.join(harness.FIXTURES, "paligemma2-tiny")
SHARD1 = "model-00001-of-00002.safetensors"
PROMPT = "segment cat"


class HostileHub(FakeHub):
    """FakeHub with failure modes by repo name (other repos behave as FakeHub does):
    acme/denied  401 even with the token      acme/forbidden  403
    acme/broken  500 always                   acme/cdn        302 to another host (127.0.0.2, own port)
    acme/by-name 302 to this hub as "localhost" (same address and port, another host name)
    acme/same    302 to this hub's own /same/ path (same host: the token goes along)
    Error bodies echo the Authorization header received, as a careless server might."""

    def __init__(self, testcase, token):
        super().__init__(testcase, {}, token)
        self.seen = []  # (path, Authorization header or None) of every request to the hub
        self.cdn = Cdn(testcase)

    def handle(self, h, body):
        auth = h.headers.get("Authorization")
        with self.lock:
            self.seen.append((h.path, auth))
        echo = f"request carried Authorization: {auth}".encode()
        parts = h.path.lstrip("/").split("/")
        if h.path.startswith("/same/") or h.path.startswith("/by-name/"):
            return self._send(h, 404, body=echo)
        if len(parts) != 5 or parts[2] != "resolve":
            return super().handle(h, body)
        repo, file = "/".join(parts[:2]), parts[4]
        if repo == "acme/denied":
            return self._send(h, 401, [("X-Error-Code", "GatedRepo")], echo)
        if repo == "acme/forbidden":
            return self._send(h, 403, body=echo)
        if repo == "acme/broken":
            return self._send(h, 500, body=echo)
        targets = {"acme/cdn": f"{self.cdn.server.url()}cdn/{file}",
                   "acme/by-name": f"http://localhost:{self.server.port}/by-name/{file}",
                   "acme/same": f"/same/{file}"}
        if repo in targets:
            return self._send(h, 302, [("Location", targets[repo]), ("X-Repo-Commit", COMMIT)])
        return super().handle(h, body)


class Cdn:
    """Another host (127.0.0.2, its own port) serving the tiny checkpoint's files under /cdn/, except the
    first shard (404), so the download stops before an export. Records the Authorization header of each
    request."""

    def __init__(self, testcase):
        self.seen = []
        self.lock = threading.Lock()
        cdn = self

        class Handler(harness.QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with cdn.lock:
                    cdn.seen.append((self.path, self.headers.get("Authorization")))
                name = self.path.rsplit("/", 1)[-1]
                path = os.path.join(TINY_CKPT, name)
                if name == SHARD1 or not os.path.isfile(path):
                    data, code = b"not here", 404
                else:
                    with open(path, "rb") as f:
                        data, code = f.read(), 200
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_HEAD = do_GET

        self.server = harness.HttpServer(Handler, host="127.0.0.2")
        testcase.addCleanup(self.server.close)


def temp_dir(testcase):
    d = tempfile.mkdtemp(prefix="pg-token-")
    testcase.addCleanup(shutil.rmtree, d, True)
    return d


class TokenTest(unittest.TestCase):
    def setUp(self):
        # Distinctive, so that any appearance is found; the Bearer form is searched for too.
        self.token = "hf_" + secrets.token_hex(16)

    def start(self, models, endpoint, how):
        # --allow_model_control: failures() also triggers the download with LoadModel.
        args = ["--hf_endpoint", endpoint, "--vae_url", endpoint + "/files/vae-oid.npz",
                "--allowed_models", "acme/*", "--allow_model_control"]  # acme/*: the fake Hub's repos
        env = None
        if how == "file":
            token_file = os.path.join(models, "token")
            with open(token_file, "w") as f:
                f.write(self.token + "\n")
            args += ["--hf_token_file", token_file]
        else:
            args += ["--hf_token_file="]
            env = {"HF_TOKEN": self.token}
        return harness.Server(models, *args, env=env, default_model="tiny")

    def failures(self, server, model_ids):
        """Triggers a download of each model id (Segment, then LoadModel); returns {id: (code, details)}."""
        out = {}
        for model_id in model_ids:
            with self.assertRaises(grpc.RpcError, msg=model_id) as e:
                server.segment(prompt=PROMPT, image_data=harness.read_image(), model_id=model_id, timeout=120)
            with self.assertRaises(grpc.RpcError, msg=model_id) as e2:
                server.load(model_id, timeout=120)
            out[model_id] = (e.exception.code(), e.exception.details(), e2.exception.details())
        return out

    def assert_token_nowhere(self, server, texts):
        code = server.terminate()
        stdout = server.proc.stdout.read().decode(errors="replace")
        server.stop()
        with open(server.log_path, "rb") as f:
            stderr = f.read().decode(errors="replace")
        self.assertEqual(code, 0, stderr[-2000:])
        self.assertGreater(len(stderr), 0)
        for name, text in [("stdout", stdout), ("stderr", stderr)] + texts:
            with self.subTest(where=name):
                self.assertNotIn(self.token, text)
                self.assertNotIn(self.token[3:], text)  # nor a fragment without the prefix
        return stderr

    def run_hub_failures(self, how):
        models = temp_dir(self)
        hub = HostileHub(self, self.token)
        with self.start(models, hub.endpoint, how) as s:
            got = self.failures(s, ["acme/denied", "acme/forbidden", "acme/missing", "acme/broken",
                                    "acme/cdn", "acme/by-name", "acme/same"])
            listed = {m.id: m.error for m in s.list_models().models}
            want = {"acme/denied": grpc.StatusCode.PERMISSION_DENIED,
                    "acme/forbidden": grpc.StatusCode.PERMISSION_DENIED,
                    "acme/missing": grpc.StatusCode.NOT_FOUND,
                    "acme/broken": grpc.StatusCode.UNAVAILABLE,
                    "acme/cdn": grpc.StatusCode.NOT_FOUND,
                    "acme/by-name": grpc.StatusCode.NOT_FOUND,
                    "acme/same": grpc.StatusCode.NOT_FOUND}
            for model_id, (code, details, load_details) in got.items():
                print(f"\n[verdict] {how}: {model_id} -> {code.name}: {details}", end="")
                self.assertEqual(code, want[model_id], f"{model_id}: {details}")
            texts = [(f"error {k}", " ".join(v[1:])) for k, v in got.items()]
            texts += [(f"ListModels {k}", v) for k, v in listed.items()]
            self.assert_token_nowhere(s, texts)

        bearer = f"Bearer {self.token}"
        # The hub's own host received the token on every repo request, the same-host redirect included.
        resolve = [(p, a) for p, a in hub.seen if "/resolve/" in p or p.startswith("/same/")]
        self.assertTrue(any(p.startswith("/same/") for p, _ in resolve), hub.seen)
        self.assertEqual([(p, a) for p, a in resolve if a != bearer], [])
        # Another host, or the same address under another name: never.
        by_name = [(p, a) for p, a in hub.seen if p.startswith("/by-name/")]
        self.assertTrue(by_name, hub.seen)
        self.assertEqual([(p, a) for p, a in by_name if a is not None], [])
        self.assertTrue(any(p.endswith("/config.json") for p, _ in hub.cdn.seen), hub.cdn.seen)
        self.assertTrue(any(p.endswith("/" + SHARD1) for p, _ in hub.cdn.seen), hub.cdn.seen)
        self.assertEqual([(p, a) for p, a in hub.cdn.seen if a is not None], [])
        print(f"\n[measure] {how}: hub saw {len(hub.seen)} requests ({len(resolve)} with the token), "
              f"redirect targets on other hosts/names {len(hub.cdn.seen) + len(by_name)} (none with it)")

    def test_token_file_hub_failures(self):
        self.run_hub_failures("file")

    def test_hf_token_env_hub_failures(self):
        self.run_hub_failures("env")

    def test_connection_refused(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        models = temp_dir(self)
        with self.start(models, f"http://127.0.0.1:{port}", "file") as server:
            got = self.failures(server, ["acme/tiny-pg"])
            code, details, _ = got["acme/tiny-pg"]
            print(f"\n[verdict] connection refused -> {code.name}: {details}")
            self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
            self.assert_token_nowhere(server, [("errors", " ".join(got["acme/tiny-pg"][1:]))])


if __name__ == "__main__":
    unittest.main()
