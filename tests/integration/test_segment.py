"""Segment, health, List/Load/Unload, concurrency, deadlines and bad inputs against the real server."""

import concurrent.futures
import os
import time
import unittest

import grpc

import harness
from harness import pb
import health_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
PROMPT = "segment cat"


class SegmentTest(harness.ServerTestCase):
    server_args = ("--max_concurrent", "2")

    def test_health_serving(self):
        for service in ("", "paligemma.v1.SegmentService", "paligemma.v1.ModelService"):
            self.assertEqual(self.server.health(service), SERVING, service)

    def test_segment_bytes_matches_engine_cli(self):
        expected = harness.engine_cli(harness.IMAGE, PROMPT, 24)
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=24)
        self.assertEqual(r.text, expected["text"])
        self.assertEqual(r.model_id, "tiny")
        self.assertGreater(len(r.image), 0)
        self.assertEqual(r.image[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(len(r.masks), len(expected["masks"]))
        for got, want in zip(r.masks, expected["masks"]):
            self.assertEqual(list(got.coordinates), want["coordinates"])
        self.assertEqual((r.width, r.height), (451, 300))
        self.assertGreater(r.timings.total_ms, 0)

    def test_options_drop_image(self):
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=4,
                                options=pb.SegmentOptions(include_image=False, include_full_masks=False))
        self.assertEqual(r.image, b"")

    def test_eight_concurrent_clients_identical(self):
        image = harness.read_image()
        reference = self.server.segment(prompt=PROMPT, image_data=image, max_new_tokens=24)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(
                lambda _: self.server.segment(prompt=PROMPT, image_data=image, max_new_tokens=24,
                                              timeout=120), range(8)))
        for r in results:
            self.assertEqual(r.text, reference.text)
            self.assertEqual(r.image, reference.image)
            self.assertEqual([m.mask for m in r.masks], [m.mask for m in reference.masks])

    def test_short_deadline_is_deadline_exceeded_quickly(self):
        image = harness.read_image()
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_data=image, max_new_tokens=1024, timeout=0.3)
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.monotonic() - t0, 2.0)
        # The server stopped generating: it answers the next request promptly.
        t1 = time.monotonic()
        self.server.segment(prompt=PROMPT, image_data=image, max_new_tokens=4, timeout=30)
        self.assertLess(time.monotonic() - t1, 10.0)

    def assertCode(self, code, message_part, **fields):
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(**fields)
        self.assertEqual(e.exception.code(), code, e.exception.details())
        self.assertIn(message_part, e.exception.details())

    def test_bad_inputs(self):
        image = harness.read_image()
        INVALID = grpc.StatusCode.INVALID_ARGUMENT
        self.assertCode(INVALID, "prompt is empty", prompt="", image_data=image)
        self.assertCode(INVALID, "prompt is empty", prompt="  \n", image_data=image)
        self.assertCode(INVALID, "the limit is 2048", prompt="x" * 3000, image_data=image)
        self.assertCode(INVALID, "no image", prompt=PROMPT)
        self.assertCode(INVALID, "not both", prompt=PROMPT, image_data=image,
                        image_url="http://example.com/a.png")
        self.assertCode(INVALID, "model id", prompt=PROMPT, image_data=image, model_id="../etc")
        self.assertCode(INVALID, "at most one '/'", prompt=PROMPT, image_data=image, model_id="a/b/c")
        self.assertCode(INVALID, "max_new_tokens", prompt=PROMPT, image_data=image, max_new_tokens=0)
        self.assertCode(INVALID, "max_new_tokens", prompt=PROMPT, image_data=image, max_new_tokens=5000)
        self.assertCode(INVALID, "scheme", prompt=PROMPT, image_url="file:///etc/passwd")
        self.assertCode(INVALID, "not a supported image", prompt=PROMPT, image_data=b"not an image at all")

    def test_oversized_image_is_invalid_argument(self):
        # 20 MB + 1 byte: accepted by the transport (max receive size fits a 20 MB image), refused at the edge.
        blob = b"\0" * (20 * 1024 * 1024 + 1)
        self.assertCode(grpc.StatusCode.INVALID_ARGUMENT, "limit", prompt=PROMPT, image_data=blob)

    def test_unknown_model_not_found(self):
        # No bundle, no HF cache, and the Hub (default endpoint) is unreachable from CI: the server must
        # not hang; it answers NOT_FOUND or UNAVAILABLE within the deadline.
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_data=harness.read_image(), model_id="nobody/none",
                                timeout=60)
        self.assertIn(e.exception.code(), (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
                                           grpc.StatusCode.DEADLINE_EXCEEDED))


class ModelLifecycleTest(harness.ServerTestCase):
    server_args = ("--allow_model_control",)  # LoadModel/UnloadModel are off by default

    def test_list_load_unload(self):
        listed = {m.id: m for m in self.server.list_models().models}
        self.assertIn("tiny", listed)
        self.assertEqual(listed["tiny"].state, pb.Model.AVAILABLE)
        self.assertEqual(listed["tiny"].source, "bundle")
        self.assertEqual(self.server.list_models().default_model_id, "tiny")

        t0 = time.monotonic()
        loaded = self.server.load("tiny").model
        print(f"\n[measure] tiny load via LoadModel: {1000 * (time.monotonic() - t0):.0f} ms "
              f"(server load_ms {loaded.load_ms:.0f})")
        self.assertEqual(loaded.state, pb.Model.READY)
        self.assertEqual(loaded.device, "cpu")
        self.assertGreater(loaded.bytes, 0)
        self.assertEqual({m.id: m.state for m in self.server.list_models().models}["tiny"], pb.Model.READY)

        unloaded = self.server.unload("tiny").model
        self.assertEqual(unloaded.state, pb.Model.AVAILABLE)
        with self.assertRaises(grpc.RpcError) as e:
            self.server.unload("tiny")
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        # A request reloads it.
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=4)
        self.assertEqual(r.model_id, "tiny")

    def test_load_unknown_bad_id(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.server.load("bad id!")
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


class PreloadHealthTest(unittest.TestCase):
    def test_not_serving_until_loaded_then_serving_and_sigterm_exits_zero(self):
        d = harness.models_dir_with_tiny(self)
        with harness.Server(d, "--preload") as s:
            deadline = time.monotonic() + 60
            states = [s.health("")]
            while states[-1] != SERVING and time.monotonic() < deadline:
                time.sleep(0.05)
                states.append(s.health(""))
            self.assertEqual(states[-1], SERVING, s.log())
            self.assertEqual(s.health("paligemma.v1.SegmentService"), SERVING)
            with open(f"/proc/{s.proc.pid}/status") as f:
                rss_kb = int([l for l in f if l.startswith("VmRSS")][0].split()[1])
            print(f"\n[measure] RSS with tiny model loaded: {rss_kb / 1024:.0f} MiB")
            # Per-request latency on the tiny model (24 new tokens).
            image = harness.read_image()
            times = []
            for _ in range(5):
                t0 = time.monotonic()
                s.segment(prompt=PROMPT, image_data=image, max_new_tokens=24)
                times.append(1000 * (time.monotonic() - t0))
            print(f"[measure] Segment latency, tiny, 24 tokens: median {sorted(times)[2]:.1f} ms "
                  f"(min {min(times):.1f})")
            self.assertEqual(s.terminate(), 0)

    def test_missing_default_model_stays_not_serving(self):
        d = harness.models_dir_with_tiny(self)
        with harness.Server(d, "--preload", "--hf_endpoint", "http://127.0.0.1:9",
                            default_model="nobody/none") as s:
            time.sleep(1.0)
            self.assertEqual(s.health(""), NOT_SERVING)
            self.assertEqual(s.health("paligemma.v1.ModelService"), SERVING)


class DrainTest(unittest.TestCase):
    def test_sigterm_drains_in_flight_request(self):
        d = harness.models_dir_with_tiny(self)
        with harness.Server(d, "--allow_model_control") as s:
            s.load("tiny")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                fut = pool.submit(s.segment, prompt=PROMPT, image_data=harness.read_image(),
                                  max_new_tokens=64)
                time.sleep(0.05)
                rc = s.terminate()
                r = fut.result(timeout=60)
            self.assertEqual(rc, 0)
            self.assertTrue(r.text is not None)


if __name__ == "__main__":
    unittest.main()
