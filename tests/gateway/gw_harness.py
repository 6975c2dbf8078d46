"""Starts build/paligemma-gateway on 127.0.0.1 (--port 0) in front of a gRPC server and always stops it.
The gRPC server itself comes from tests/integration/harness.py (the real paligemma-server)."""

import os
import subprocess
import tempfile
import threading

GATEWAY = os.environ.get("PG_GATEWAY", "build/paligemma-gateway")
ARTIFACTS = os.environ.get("PG_ARTIFACTS_DIR", "build/artifacts")
START_TIMEOUT_S = 30


class Gateway:
    """One paligemma-gateway process; use as a context manager; stop() is idempotent."""

    def __init__(self, grpc_endpoint, *args, env=None):
        self._dir = tempfile.mkdtemp(prefix="pg-gateway-")
        self.log_path = os.path.join(self._dir, "gateway.log")
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        # The gateway's environment fallbacks that change what a test talks to (HTTPS, gRPC TLS, CORS).
        for k in ("PORT", "HOST", "GRPC_ENDPOINT", "TLS_CERT", "TLS_KEY", "GRPC_TLS_CA", "GRPC_TLS_SERVER_NAME",
                  "GRPC_TLS_CERT", "GRPC_TLS_KEY", "CORS_ORIGINS"):
            full_env.pop(k, None)
        full_env.update(env or {})
        cmd = [GATEWAY, "--grpc_endpoint", grpc_endpoint, "--host", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=full_env)
        line = {}

        def read_first_line():
            line["text"] = self.proc.stdout.readline().decode()

        t = threading.Thread(target=read_first_line, daemon=True)
        t.start()
        t.join(START_TIMEOUT_S)
        text = line.get("text", "")
        if not text.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"gateway did not start: {text!r}\n{self.log()}")
        self.port = int(text.split()[-1].rsplit(":", 1)[1])
        self.base = f"http://localhost:{self.port}"

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout:
            self.proc.stdout.close()
        if not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
