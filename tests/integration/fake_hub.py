"""A fake Hugging Face Hub on 127.0.0.1: `/{org}/{name}/resolve/{revision}/{file}` for the repos it is given,
401 without the expected bearer token, 404 for unknown repos or files, ETag/X-Repo-Commit headers like the
real Hub, HEAD and Range (206) support, and an optional one-time cut of a file half-way through (to test that
the server resumes). A harsher fault, for tests/faults: while `cut_active` is true, every GET of `cut_file`
(full or ranged) is cut after `cut_after` bytes of its body, so that a download fails however often it
resumes; set cut_active to False to make the hub healthy again. Also serves plain files under /files/ (e.g.
vae-oid.npz) without auth."""

import hashlib
import http.server
import os
import threading

import harness

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self, testcase, repos, token, files=None, cut_once=None, cut_file=None, cut_after=0):
        """repos: {"org/name": folder}; files: {"name": path} served at /files/name; cut_once: a file name
        whose first full download is cut after half its bytes; cut_file/cut_after: a file name whose every
        GET is cut after cut_after body bytes while self.cut_active (see above)."""
        self.repos, self.token, self.files = repos, token, files or {}
        self.cut_pending = set([cut_once] if cut_once else [])
        self.cut_file, self.cut_after = cut_file, cut_after
        self.cut_active = cut_file is not None
        self.cuts = 0  # GETs cut by cut_file/cut_after
        self.requests = []  # (method, path, range header, authorized)
        self.lock = threading.Lock()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.handle(self, body=False)

            def do_GET(self):
                hub.handle(self, body=True)

        self.server = harness.HttpServer(Handler)
        testcase.addCleanup(self.server.close)
        self.endpoint = f"http://127.0.0.1:{self.server.port}"

    def count(self):
        with self.lock:
            return len(self.requests)

    def _send(self, h, status, headers=(), body=b""):
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command == "GET":
            h.wfile.write(body)

    def handle(self, h, body):
        auth = h.headers.get("Authorization") == f"Bearer {self.token}"
        rng = h.headers.get("Range")
        with self.lock:
            self.requests.append((h.command, h.path, rng, auth))
        path = None
        if h.path.startswith("/files/"):
            path = self.files.get(h.path[len("/files/"):])
            if path is None:
                return self._send(h, 404, body=b"not found")
            name = os.path.basename(path)
        else:
            parts = h.path.lstrip("/").split("/")
            if len(parts) != 5 or parts[2] != "resolve":
                return self._send(h, 404, body=b"bad path")
            if not auth:
                return self._send(h, 401, [("X-Error-Code", "GatedRepo")], b"Access to model is restricted")
            repo, name = "/".join(parts[:2]), parts[4]
            if repo not in self.repos:
                return self._send(h, 404, [("X-Error-Code", "RepoNotFound")], b"Repository not found")
            path = os.path.join(self.repos[repo], name)
            if not os.path.isfile(path):
                return self._send(h, 404, [("X-Error-Code", "EntryNotFound")], b"Entry not found")
        with open(path, "rb") as f:
            data = f.read()
        headers = [("ETag", '"' + hashlib.sha256(data).hexdigest() + '"'), ("X-Repo-Commit", COMMIT),
                   ("Accept-Ranges", "bytes")]
        if not body:
            h.send_response(200)
            for k, v in headers:
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            return
        with self.lock:
            cut_here = self.cut_active and name == self.cut_file
            self.cuts += cut_here
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return self._send(h, 416, headers)
            h.send_response(206)
            for k, v in headers:
                h.send_header(k, v)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            h.send_header("Content-Length", str(len(data) - start))
            h.end_headers()
            if cut_here:
                return self._cut(h, data[start:start + self.cut_after])
            h.wfile.write(data[start:])
            return
        cut = False
        with self.lock:
            if name in self.cut_pending:
                self.cut_pending.discard(name)
                cut = True
        h.send_response(200)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if cut:  # half the body, then drop the connection
            return self._cut(h, data[: len(data) // 2])
        if cut_here:
            return self._cut(h, data[: self.cut_after])
        h.wfile.write(data)

    @staticmethod
    def _cut(h, part):
        """Sends part of the announced body, then drops the connection."""
        h.wfile.write(part)
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)
