"""Starts the real paligemma-server on 127.0.0.1 (--port 0) for a test and always stops it; small HTTP
servers for image_url and a fake Hugging Face Hub; gRPC stubs built from the protoc-generated modules
(build/python, made by the pg_python_protos target). Every wait is bounded."""

import http.server
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

from paligemma.v1 import paligemma_pb2 as pb
import health_pb2

SERVER = os.environ.get("PG_SERVER", "build/paligemma-server")
TINY_BUNDLE = os.environ.get("PG_TINY_BUNDLE", "build/tiny-bundle")
SEGMENT_CLI = os.environ.get("PG_SEGMENT_CLI", "build/paligemma-segment")
FIXTURES = os.environ.get("PG_FIXTURES_DIR", "tests/fixtures")
IMAGE = os.path.join(FIXTURES, "images", "chelsea.png")
START_TIMEOUT_S = 60


def read_image(path=IMAGE):
    with open(path, "rb") as f:
        return f.read()


class Server:
    """One paligemma-server process. Use as a context manager; stop() is idempotent."""

    def __init__(self, models_dir, *args, env=None, default_model="tiny", channel_credentials=None,
                 channel_options=()):
        """`channel_credentials` (grpc.ssl_channel_credentials) makes self.channel a TLS channel, with
        `channel_options` such as grpc.ssl_target_name_override."""
        self.models_dir = models_dir
        cmd = [SERVER, "--host", "127.0.0.1", "--port", "0", "--models_dir", models_dir,
               "--default_model", default_model, "--threads", "2", *args]
        full_env = dict(os.environ)
        full_env.pop("HF_TOKEN", None)
        full_env.update(env or {})
        self.log_path = os.path.join(models_dir, "server.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, env=full_env)
        self.port = None
        line = {}

        def read_first_line():
            line["text"] = self.proc.stdout.readline().decode()

        t = threading.Thread(target=read_first_line, daemon=True)
        t.start()
        t.join(START_TIMEOUT_S)
        text = line.get("text", "")
        if not text.startswith("listening on "):
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(timeout=30)
            log = self.log()
            self.stop()
            raise RuntimeError(f"server did not start: {text!r}\n{log}")
        self.address = text.split()[-1]
        self.port = int(self.address.rsplit(":", 1)[1])
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20), *channel_options]
        if channel_credentials is None:
            self.channel = grpc.insecure_channel(self.address, options=options)
        else:
            self.channel = grpc.secure_channel(self.address, channel_credentials, options=options)
        grpc.channel_ready_future(self.channel).result(timeout=10)

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def rpc(self, service, method, request, response_cls, timeout=60, metadata=None):
        call = self.channel.unary_unary(f"/paligemma.v1.{service}/{method}",
                                        request_serializer=type(request).SerializeToString,
                                        response_deserializer=response_cls.FromString)
        return call(request, timeout=timeout, metadata=metadata)

    def segment(self, timeout=60, **fields):
        return self.rpc("SegmentService", "Segment", pb.SegmentRequest(**fields), pb.SegmentResponse,
                        timeout)

    def list_models(self):
        return self.rpc("ModelService", "ListModels", pb.ListModelsRequest(), pb.ListModelsResponse)

    def load(self, model_id, timeout=120):
        return self.rpc("ModelService", "LoadModel", pb.LoadModelRequest(model_id=model_id),
                        pb.LoadModelResponse, timeout)

    def unload(self, model_id):
        return self.rpc("ModelService", "UnloadModel", pb.UnloadModelRequest(model_id=model_id),
                        pb.UnloadModelResponse)

    def health(self, service=""):
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                        response_deserializer=health_pb2.HealthCheckResponse.FromString)
        return call(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    def terminate(self, timeout=30):
        """SIGTERM and wait; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self):
        if getattr(self, "channel", None) is not None:
            self.channel.close()
            self.channel = None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.proc.stdout:
            self.proc.stdout.close()
        if not self._log.closed:
            self._log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def models_dir_with_tiny(testcase, name="tiny"):
    """A temp MODELS_DIR holding the tiny bundle at bundles/<name>; removed after the test."""
    d = tempfile.mkdtemp(prefix="pg-models-")
    testcase.addCleanup(shutil.rmtree, d, True)
    dest = os.path.join(d, "bundles", name)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copytree(TINY_BUNDLE, dest)
    return d


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class HttpServer:
    """A threaded HTTP server on `host`, port 0; `handler` is a BaseHTTPRequestHandler class."""

    def __init__(self, handler, host="127.0.0.1"):
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/"):
        return f"http://{self.host}:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def file_server(testcase, directory, host="127.0.0.1"):
    handler = type("Handler", (QuietHandler,), {})
    handler.__init__ = lambda self, *a, **k: QuietHandler.__init__(self, *a, directory=directory, **k)
    s = HttpServer(handler, host)
    testcase.addCleanup(s.close)
    return s


def redirect_server(testcase, target, host="127.0.0.1"):
    class Redirect(QuietHandler):
        def do_GET(self):
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
    s = HttpServer(Redirect, host)
    testcase.addCleanup(s.close)
    return s


def engine_cli(image_path, prompt, max_new_tokens):
    """The engine CLI's answer, the reference the server must reproduce."""
    import json
    out = subprocess.run([SEGMENT_CLI, "--bundle", TINY_BUNDLE, "--image", image_path, "--prompt", prompt,
                          "--max-new-tokens", str(max_new_tokens), "--threads", "2"],
                         capture_output=True, timeout=120, check=True)
    return json.loads(out.stdout)


class ServerTestCase(unittest.TestCase):
    """Starts a server per test class (tiny bundle as the default model) and stops it afterwards."""
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls._dir = tempfile.mkdtemp(prefix="pg-models-")
        shutil.copytree(TINY_BUNDLE, os.path.join(cls._dir, "bundles", "tiny"))
        cls.server = Server(cls._dir, *cls.server_args)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls._dir, True)
