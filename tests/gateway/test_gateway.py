"""The REST gateway against the real paligemma-server on the tiny bundle: the original README's requests
snippets (unchanged but for the port), equality with the direct gRPC answer, every error case with its
status and body, the body cap, /v1 JSON routes, request ids, backend loss and recovery, and the gateway's
added latency over direct gRPC."""

import base64
import json
import os
import shutil
import statistics
import tempfile
import time
import unittest

import requests

import harness
from harness import pb
import gw_harness

PROMPT = "segment cat"
ERROR = "error"


def err(detail):
    return {"status": ERROR, "detail": detail}


def form_grpc_request(**fields):
    """What the form endpoint sends for the same input (it leaves full masks out unless asked)."""
    return pb.SegmentRequest(options=pb.SegmentOptions(include_full_masks=False), **fields)


class GatewayTest(unittest.TestCase):
    """One server (private URLs allowed, images served from 127.0.0.1) and one gateway for the class."""

    @classmethod
    def setUpClass(cls):
        cls._dir = tempfile.mkdtemp(prefix="pg-models-")
        shutil.copytree(harness.TINY_BUNDLE, os.path.join(cls._dir, "bundles", "tiny"))
        # --allow_model_control: test_v1_models loads and unloads through the gateway.
        cls.server = harness.Server(cls._dir, "--allow_private_urls", "--allow_model_control")
        try:
            cls.gateway = gw_harness.Gateway(cls.server.address)
        except Exception:
            cls.server.stop()
            raise
        cls.images = harness.HttpServer(
            type("H", (harness.QuietHandler,), {"__init__": lambda self, *a, **k: harness.QuietHandler.__init__(
                self, *a, directory=os.path.join(harness.FIXTURES, "images"), **k)}))
        cls.PORT = cls.gateway.port
        cls.image_url = cls.images.url("/chelsea.png")

    @classmethod
    def tearDownClass(cls):
        cls.images.close()
        cls.gateway.stop()
        cls.server.stop()
        shutil.rmtree(cls._dir, True)

    def assertError(self, response, code, detail):
        self.assertEqual(response.status_code, code, response.text)
        self.assertEqual(response.headers["Content-Type"], "application/json")
        self.assertEqual(response.json(), err(detail))

    def assertMatchesGrpc(self, result, grpc_answer):
        """The form answer carries the reference app's fields with the right types and equals gRPC's."""
        self.assertIsInstance(result["image"], str)
        image = base64.b64decode(result["image"], validate=True)
        self.assertEqual(image[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(image, grpc_answer.image)
        self.assertIsInstance(result["masks"], list)
        self.assertEqual(len(result["masks"]), len(grpc_answer.masks))
        for got, want in zip(result["masks"], grpc_answer.masks):
            self.assertIsInstance(got["mask"], str)
            self.assertEqual(base64.b64decode(got["mask"], validate=True), want.mask)
            self.assertIsInstance(got["coordinates"], list)
            self.assertTrue(all(isinstance(c, int) for c in got["coordinates"]))
            self.assertEqual(got["coordinates"], list(want.coordinates))
            self.assertEqual(got["label"], want.label)
            self.assertEqual(got["box"], list(want.box))
            self.assertEqual(got["has_mask"], want.has_mask)
        self.assertEqual(result["text"], grpc_answer.text)
        self.assertEqual(result["model_id"], "tiny")
        self.assertEqual((result["width"], result["height"]), (451, 300))

    # --- the original README's snippets --------------------------------------------------------------

    def test_readme_root(self):
        PORT = self.PORT
        response = requests.get(f"http://localhost:{PORT}/")
        print(response.json())
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"message": "Welcome to the PaliGemma Segmentation API!"})
        self.assertEqual(response.content, b'{"message":"Welcome to the PaliGemma Segmentation API!"}')

    def test_readme_image_url(self):
        PORT = self.PORT
        url = f"http://localhost:{PORT}/segment"
        data = {
            "prompt": "segment cat",
            "image_url": self.image_url,
        }
        response = requests.post(url, data=data)
        result = response.json()
        self.assertEqual(response.status_code, 200, response.text)
        expected = self.server.rpc("SegmentService", "Segment",
                                   form_grpc_request(prompt="segment cat", image_url=self.image_url),
                                   pb.SegmentResponse, timeout=300)
        self.assertMatchesGrpc(result, expected)

    def test_readme_file_upload(self):
        PORT = self.PORT
        url = f"http://localhost:{PORT}/segment"
        with open(harness.IMAGE, "rb") as image_file:
            files = {"image_file": ("chelsea.png", image_file, "image/png")}
            data = {"prompt": "segment cat"}
            response = requests.post(url, files=files, data=data)
        result = response.json()
        self.assertEqual(response.status_code, 200, response.text)
        expected = self.server.rpc("SegmentService", "Segment",
                                   form_grpc_request(prompt="segment cat", image_data=harness.read_image()),
                                   pb.SegmentResponse, timeout=300)
        self.assertMatchesGrpc(result, expected)
        # The trailing-slash form of the route answers the same.
        with open(harness.IMAGE, "rb") as f:
            again = requests.post(url + "/", files={"image_file": ("chelsea.png", f, "image/png")}, data=data)
        self.assertEqual(again.json()["masks"], result["masks"])

    def test_extra_form_fields(self):
        with open(harness.IMAGE, "rb") as f:
            r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", f, "image/png")},
                              data={"prompt": PROMPT, "max_new_tokens": "12", "model_id": "tiny",
                                    "include_image": "false", "include_full_masks": "true"}, timeout=120)
        self.assertEqual(r.status_code, 200, r.text)
        result = r.json()
        expected = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=12,
                                       model_id="tiny", options=pb.SegmentOptions(include_image=False,
                                                                                  include_full_masks=True))
        self.assertEqual(result["image"], "")
        self.assertEqual(result["text"], expected.text)
        for got, want in zip(result["masks"], expected.masks):
            self.assertEqual(base64.b64decode(got.get("full_mask", "")), want.full_mask)

    # --- errors -----------------------------------------------------------------------------------------

    def test_form_errors(self):
        url = f"{self.gateway.base}/segment"
        with open(harness.IMAGE, "rb") as f:
            image = f.read()
        self.assertError(requests.post(url, data={"prompt": PROMPT}, timeout=30), 400,
                         "Provide either an image file or image URL.")
        self.assertError(requests.post(url, files={"image_file": ("c.png", image, "image/png")},
                                       data={"prompt": PROMPT, "image_url": self.image_url}, timeout=30), 400,
                         "Provide either an image file or image URL, not both.")
        self.assertError(requests.post(url, data={"image_url": self.image_url}, timeout=30), 400,
                         "Missing required form field: prompt")
        self.assertError(requests.post(url, files={"image_file": ("c.png", image, "image/png")}, timeout=30),
                         400, "Missing required form field: prompt")
        self.assertError(requests.post(url, data={"prompt": PROMPT, "image_url": self.image_url,
                                                  "max_new_tokens": "lots"}, timeout=30), 400,
                         'max_new_tokens must be an integer, got "lots"')

    def test_server_errors_keep_shape(self):
        url = f"{self.gateway.base}/segment"
        # INVALID_ARGUMENT from the server: its message, 400.
        r = requests.post(url, data={"prompt": "  ", "image_url": self.image_url}, timeout=60)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(r.json()["status"], ERROR)
        self.assertIn("prompt is empty", r.json()["detail"])
        r = requests.post(url, files={"image_file": ("x.png", b"not an image", "image/png")},
                          data={"prompt": PROMPT}, timeout=60)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(set(r.json()), {"status", "detail"})
        r = requests.post(url, data={"prompt": PROMPT, "image_url": self.images.url("/missing.png")}, timeout=60)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(r.json()["status"], ERROR)
        r = requests.post(url, data={"prompt": PROMPT, "image_url": self.image_url, "max_new_tokens": "100000"},
                          timeout=60)
        self.assertEqual(r.status_code, 400, r.text)
        # Each one is the server's own message for the same request.
        with self.assertRaises(harness.grpc.RpcError) as e:
            self.server.segment(prompt="  ", image_url=self.image_url)
        r = requests.post(url, data={"prompt": "  ", "image_url": self.image_url}, timeout=60)
        self.assertEqual(r.json(), err(e.exception.details()))

    def test_oversized_upload_is_413(self):
        big = b"\0" * (26 * 1024 * 1024)
        r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("big.png", big, "image/png")},
                          data={"prompt": PROMPT}, timeout=60)
        self.assertError(r, 413, f"Request body too large (the limit is {25 << 20} bytes).")

        def chunks():  # valid JSON so far, no Content-Length: the cap applies while streaming
            yield b'{"prompt": "'
            for _ in range(27):
                yield b"x" * (1024 * 1024)
        r = requests.post(f"{self.gateway.base}/v1/segment", data=chunks(),
                          headers={"Content-Type": "application/json"}, timeout=60)
        self.assertError(r, 413, f"Request body too large (the limit is {25 << 20} bytes).")

    def test_not_found_and_method_not_allowed(self):
        base = self.gateway.base
        self.assertError(requests.get(f"{base}/nothing", timeout=10), 404, "Not Found")
        self.assertError(requests.get(f"{base}/v1/nothing", timeout=10), 404, "Not Found")
        self.assertError(requests.get(f"{base}/segment", timeout=10), 405, "Method Not Allowed")
        self.assertError(requests.delete(f"{base}/v1/models", timeout=10), 405, "Method Not Allowed")
        self.assertError(requests.post(f"{base}/", timeout=10), 405, "Method Not Allowed")

    def test_request_timeout_is_grpc_deadline(self):
        """--request_timeout becomes the gRPC deadline: a long generation answers 504 quickly and the
        server stops working on it (the next request is prompt)."""
        with gw_harness.Gateway(self.server.address, "--request_timeout", "300ms") as short:
            t0 = time.monotonic()
            r = requests.post(f"{short.base}/segment",
                              files={"image_file": ("c.png", harness.read_image(), "image/png")},
                              data={"prompt": PROMPT, "max_new_tokens": "1024"}, timeout=60)
            self.assertEqual(r.status_code, 504, r.text)
            self.assertEqual(r.json()["status"], ERROR)
            self.assertLess(time.monotonic() - t0, 3.0)
        t1 = time.monotonic()
        self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=4, timeout=30)
        self.assertLess(time.monotonic() - t1, 10.0)

    # --- JSON routes, health, request ids --------------------------------------------------------------------

    def test_v1_segment_json_round_trip(self):
        body = {"prompt": PROMPT, "image_data": base64.b64encode(harness.read_image()).decode(),
                "max_new_tokens": 24}
        r = requests.post(f"{self.gateway.base}/v1/segment", json=body, timeout=120)
        self.assertEqual(r.status_code, 200, r.text)
        result = r.json()
        expected = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=24)
        self.assertEqual(base64.b64decode(result["image"]), expected.image)
        self.assertEqual(result["text"], expected.text)
        self.assertEqual(result["model_id"], "tiny")
        self.assertEqual((result["width"], result["height"]), (451, 300))
        self.assertEqual(len(result["masks"]), len(expected.masks))
        for got, want in zip(result["masks"], expected.masks):
            # proto field names, defaults emitted
            self.assertEqual(set(got), {"mask", "coordinates", "label", "box", "full_mask", "has_mask"})
            self.assertEqual(base64.b64decode(got["mask"]), want.mask)
            self.assertEqual(base64.b64decode(got["full_mask"]), want.full_mask)
            self.assertEqual(got["coordinates"], list(want.coordinates))
        self.assertEqual(set(result["timings"]), {"queue_ms", "fetch_ms", "preprocess_ms", "vision_ms",
                                                  "prefill_ms", "decode_ms", "masks_ms", "total_ms"})
        # Bad JSON input: the same error shape.
        r = requests.post(f"{self.gateway.base}/v1/segment", json={"prompt": PROMPT}, timeout=30)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(r.json()["status"], ERROR)
        r = requests.post(f"{self.gateway.base}/v1/segment", data="{not json",
                          headers={"Content-Type": "application/json"}, timeout=30)
        self.assertEqual(r.status_code, 400, r.text)
        self.assertEqual(set(r.json()), {"status", "detail"})

    def test_v1_models(self):
        base = self.gateway.base
        r = requests.post(f"{base}/v1/models:load", json={"model_id": "tiny"}, timeout=120)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["model"]["state"], "READY")
        r = requests.get(f"{base}/v1/models", timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        body = r.json()
        self.assertEqual(body["default_model_id"], "tiny")
        tiny = [m for m in body["models"] if m["id"] == "tiny"][0]
        self.assertEqual(set(tiny), {"id", "state", "error", "source", "bytes", "device", "dtype", "load_ms"})
        self.assertEqual(tiny["error"], "")
        r = requests.post(f"{base}/v1/models:unload", json={"model_id": "nonexistent"}, timeout=30)
        self.assertIn(r.status_code, (400, 404), r.text)
        self.assertEqual(r.json()["status"], ERROR)

    def test_health_and_ready(self):
        r = requests.get(f"{self.gateway.base}/healthz", timeout=10)
        self.assertEqual((r.status_code, r.json()), (200, {"status": "ok"}))
        r = requests.get(f"{self.gateway.base}/readyz", timeout=10)
        self.assertEqual((r.status_code, r.json()), (200, {"status": "ok"}))

    def test_request_id_echoed_and_logged(self):
        r = requests.get(f"{self.gateway.base}/v1/models", headers={"X-Request-Id": "test-rid-42"}, timeout=30)
        self.assertEqual(r.headers["X-Request-Id"], "test-rid-42")
        r = requests.get(f"{self.gateway.base}/", timeout=10)
        generated = r.headers["X-Request-Id"]
        self.assertRegex(generated, r"^[0-9a-f]{24}$")
        def records():
            return [json.loads(l) for l in self.gateway.log().splitlines() if l.strip()]

        deadline = time.monotonic() + 5
        while not any(r.get("request_id") == generated for r in records()) and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = [r for r in records() if r.get("request_id") == "test-rid-42"]
        self.assertEqual(len(lines), 1, lines)
        line = lines[0]
        self.assertEqual((line["msg"], line["method"], line["path"], line["route"], line["status"]),
                         ("request", "GET", "/v1/models", "/v1/models", 200))
        self.assertGreater(line["bytes"], 0)
        self.assertIsInstance(line["duration_ms"], (int, float))
        self.assertEqual([r["path"] for r in records() if r.get("request_id") == generated], ["/"])
        # The server logged the same id for the RPC the gateway made on the request's behalf.
        deadline = time.monotonic() + 5
        while "test-rid-42" not in self.server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        server_lines = [json.loads(l) for l in self.server.log().splitlines() if "test-rid-42" in l]
        self.assertEqual([(r["method"], r["code"]) for r in server_lines], [("ListModels", "OK")])

    # --- latency ----------------------------------------------------------------------------------------

    def test_added_latency(self):
        """The gateway's added latency over direct gRPC, interleaved, reported (not asserted beyond sanity).
        Wall time per request is measured by the client; the server's own timings.total_ms is subtracted
        so that the tiny model's run-to-run variance does not drown the transport's cost."""
        image = harness.read_image()
        n = 40
        b64 = base64.b64encode(image).decode()
        session = requests.Session()
        self.addCleanup(session.close)
        wall = {"grpc": [], "v1_json": [], "form": []}
        outside = {"grpc": [], "v1_json": [], "form": []}  # wall minus the server's total_ms
        for i in range(n + 3):
            t0 = time.perf_counter()
            g = self.server.segment(prompt=PROMPT, image_data=image, max_new_tokens=8)
            t1 = time.perf_counter()
            r1 = session.post(f"{self.gateway.base}/v1/segment",
                              json={"prompt": PROMPT, "image_data": b64, "max_new_tokens": 8}, timeout=60)
            t2 = time.perf_counter()
            r2 = session.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", image, "image/png")},
                              data={"prompt": PROMPT, "max_new_tokens": "8", "include_full_masks": "true"},
                              timeout=60)
            t3 = time.perf_counter()
            self.assertEqual((r1.status_code, r2.status_code), (200, 200))
            if i < 3:  # warm-up
                continue
            for key, dt, total in (("grpc", t1 - t0, g.timings.total_ms),
                                   ("v1_json", t2 - t1, r1.json()["timings"]["total_ms"]),
                                   ("form", t3 - t2, r2.json()["timings"]["total_ms"])):
                wall[key].append(dt * 1000)
                outside[key].append(dt * 1000 - total)

        def pct(values, p):
            values = sorted(values)
            return round(values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))], 2)

        report = {"n": n, "note": "tiny model, max_new_tokens=8, chelsea.png (451x300, 138 KB) sent as bytes, "
                                  "full masks on, one client, 127.0.0.1; outside_server = wall - timings.total_ms"}
        for k in wall:
            report[k] = {"wall_p50_ms": pct(wall[k], 50), "wall_p95_ms": pct(wall[k], 95),
                         "outside_server_p50_ms": pct(outside[k], 50), "outside_server_p95_ms": pct(outside[k], 95)}
        for k in ("v1_json", "form"):
            report[k]["added_p50_ms"] = round(report[k]["outside_server_p50_ms"] - report["grpc"]["outside_server_p50_ms"], 2)
            report[k]["added_p95_ms"] = round(report[k]["outside_server_p95_ms"] - report["grpc"]["outside_server_p95_ms"], 2)
        print("gateway latency:", json.dumps(report, indent=2))
        os.makedirs(gw_harness.ARTIFACTS, exist_ok=True)
        with open(os.path.join(gw_harness.ARTIFACTS, "gateway-latency.json"), "w") as f:
            json.dump(report, f, indent=2)
        # Sanity only: the gateway's own work stays well under a tiny-model request.
        self.assertLess(report["form"]["added_p50_ms"], 100)


class BackendLossTest(unittest.TestCase):
    """A server with the default URL policy; killed and restarted on the same port under the gateway."""

    def setUp(self):
        self._dir = harness.models_dir_with_tiny(self)
        self.server = harness.Server(self._dir)
        self.addCleanup(lambda: self.server.stop())
        self.gateway = gw_harness.Gateway(self.server.address)
        self.addCleanup(self.gateway.stop)
        self.images = harness.file_server(self, os.path.join(harness.FIXTURES, "images"))

    def post_file(self):
        return requests.post(f"{self.gateway.base}/segment",
                             files={"image_file": ("c.png", harness.read_image(), "image/png")},
                             data={"prompt": PROMPT, "max_new_tokens": "4"}, timeout=60)

    def test_private_url_is_403(self):
        r = requests.post(f"{self.gateway.base}/segment",
                          data={"prompt": PROMPT, "image_url": self.images.url("/chelsea.png")}, timeout=60)
        self.assertEqual(r.status_code, 403, r.text)
        self.assertEqual(r.json()["status"], ERROR)
        with self.assertRaises(harness.grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=self.images.url("/chelsea.png"))
        self.assertEqual(r.json()["detail"], e.exception.details())

    def test_backend_killed_then_restarted(self):
        self.assertEqual(self.post_file().status_code, 200)
        port = self.server.port
        self.server.stop()  # SIGKILL
        r = self.post_file()
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertEqual(r.json()["status"], ERROR)
        r = requests.get(f"{self.gateway.base}/v1/models", timeout=30)
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(set(r.json()), {"status", "detail"})
        r = requests.get(f"{self.gateway.base}/readyz", timeout=30)
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(requests.get(f"{self.gateway.base}/healthz", timeout=10).status_code, 200)

        self.server = harness.Server(self._dir, "--port", str(port))
        deadline = time.monotonic() + 20
        while True:
            r = self.post_file()
            if r.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertIn("masks", r.json())
        self.assertEqual(requests.get(f"{self.gateway.base}/readyz", timeout=30).status_code, 200)


if __name__ == "__main__":
    unittest.main()
