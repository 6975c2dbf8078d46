"""Observability end to end: the real paligemma-server on the tiny bundle behind the real gateway. A few
/segment requests (valid and invalid) must move the gateway's /metrics counters by exactly the expected
amounts (its own HTTP metrics and the server's, fetched through GetStats), GET /v1/stats must answer, and
every log line of both processes must be one JSON object, the lines of one request carrying its id."""

import json
import os
import re
import shutil
import tempfile
import time
import unittest

import requests

import harness
import gw_harness

PROMPT = "segment cat"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError(f"unparsable metrics line {line!r}")
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    """The value of the sample `name` with exactly these labels (0 when absent: a counter not yet
    created)."""
    return metrics.get((name, frozenset(labels.items())), 0.0)


def json_lines(path):
    with open(path, "rb") as f:
        text = f.read().decode()
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as e:
            raise AssertionError(f"{path}: log line is not JSON: {line!r}") from e
    return records


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._dir = tempfile.mkdtemp(prefix="pg-models-")
        shutil.copytree(harness.TINY_BUNDLE, os.path.join(cls._dir, "bundles", "tiny"))
        cls.server = harness.Server(cls._dir)
        try:
            cls.gateway = gw_harness.Gateway(cls.server.address)
        except Exception:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.gateway.stop()
        cls.server.stop()
        shutil.rmtree(cls._dir, True)

    def scrape(self):
        r = requests.get(f"{self.gateway.base}/metrics", timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertTrue(r.headers["Content-Type"].startswith("text/plain"), r.headers)
        return parse_metrics(r.text)

    def segment_form(self, rid, **data):
        with open(harness.IMAGE, "rb") as f:
            return requests.post(f"{self.gateway.base}/segment", headers={"X-Request-Id": rid},
                                 files={"image_file": ("chelsea.png", f, "image/png")}, data=data, timeout=300)

    def test_metrics_stats_and_logs(self):
        before = self.scrape()
        self.assertEqual(value(before, "paligemma_server_up"), 1)

        ok1 = self.segment_form("obs-ok-1", prompt=PROMPT)
        self.assertEqual(ok1.status_code, 200, ok1.text)
        # Same image again: the vision tower's output comes from the cache.
        ok2 = self.segment_form("obs-ok-2", prompt=PROMPT)
        self.assertEqual(ok2.status_code, 200, ok2.text)
        # Refused by the server (empty prompt): a gRPC INVALID_ARGUMENT, HTTP 400.
        bad_server = requests.post(f"{self.gateway.base}/v1/segment", headers={"X-Request-Id": "obs-bad-server"},
                                   json={"prompt": "", "image_data": "aGVsbG8="}, timeout=60)
        self.assertEqual(bad_server.status_code, 400, bad_server.text)
        # Refused by the gateway's form validation (no prompt): never reaches the server.
        bad_gateway = self.segment_form("obs-bad-gateway")
        self.assertEqual(bad_gateway.status_code, 400, bad_gateway.text)

        after = self.scrape()

        def delta(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        # The server's counters, through GetStats.
        self.assertEqual(value(after, "paligemma_server_up"), 1)
        self.assertEqual(delta("paligemma_server_requests_total", method="Segment", model="tiny", code="OK"), 2)
        self.assertEqual(delta("paligemma_server_requests_total", method="Segment", model="",
                               code="INVALID_ARGUMENT"), 1)
        self.assertEqual(delta("paligemma_server_request_duration_seconds_count", method="Segment"), 3)
        self.assertEqual(delta("paligemma_server_request_duration_seconds_bucket", method="Segment", le="+Inf"), 3)
        self.assertEqual(delta("paligemma_server_stage_duration_seconds_count", stage="decode"), 2)
        self.assertGreater(delta("paligemma_server_stage_duration_seconds_sum", stage="decode"), 0)
        tokens = delta("paligemma_server_tokens_generated_total")
        self.assertGreater(tokens, 0)
        self.assertEqual(value(after, "paligemma_server_model_state", model="tiny", state="ready"), 1)
        self.assertGreater(value(after, "paligemma_server_model_bytes", model="tiny"), 0)
        # The model was loaded by the first request: one miss, then one hit.
        self.assertEqual(value(after, "paligemma_server_cache_misses_total", model="tiny", cache="vision"), 1)
        self.assertEqual(value(after, "paligemma_server_cache_hits_total", model="tiny", cache="vision"), 1)
        self.assertGreater(value(after, "paligemma_server_cache_bytes", model="tiny", cache="vision"), 0)
        self.assertEqual(value(after, "paligemma_server_model_queue_depth", model="tiny"), 0)
        self.assertEqual(value(after, "paligemma_server_model_running_sequences", model="tiny"), 0)
        steps = value(after, "paligemma_server_decode_steps_total", model="tiny")
        self.assertEqual(value(after, "paligemma_server_decode_sequences_total", model="tiny"), steps)  # one at a time
        # The gateway's own, by route pattern.
        self.assertEqual(delta("paligemma_gateway_http_requests_total", route="/segment", method="POST", code="200"), 2)
        self.assertEqual(delta("paligemma_gateway_http_requests_total", route="/segment", method="POST", code="400"), 1)
        self.assertEqual(delta("paligemma_gateway_http_requests_total", route="/v1/segment", method="POST",
                               code="400"), 1)
        self.assertEqual(delta("paligemma_gateway_http_requests_total", route="/metrics", method="GET", code="200"), 1)
        self.assertEqual(delta("paligemma_gateway_http_request_duration_seconds_count", route="/segment",
                               method="POST"), 3)
        print(f"\ntokens generated by 2 requests: {tokens:.0f}; decode steps so far: {steps:.0f}")

        # GET /v1/stats: the same counters as JSON (int64 as strings, proto field names).
        r = requests.get(f"{self.gateway.base}/v1/stats", headers={"X-Request-Id": "obs-stats"}, timeout=30)
        self.assertEqual(r.status_code, 200, r.text)
        stats = r.json()
        counts = {(c["method"], c["model_id"], c["code"]): int(c["count"]) for c in stats["requests"]}
        self.assertEqual(counts[("Segment", "tiny", "OK")],
                         value(after, "paligemma_server_requests_total", method="Segment", model="tiny", code="OK"))
        self.assertGreaterEqual(int(stats["tokens_generated"]), tokens)
        tiny = [m for m in stats["models"] if m["model_id"] == "tiny"]
        self.assertEqual(len(tiny), 1, stats["models"])
        self.assertEqual(tiny[0]["state"], "READY")
        self.assertGreater(int(tiny[0]["bytes"]), 0)
        self.assertEqual(int(tiny[0]["vision_cache"]["hits"]), 1)
        self.assertEqual(sorted(s["stage"] for s in stats["stages"]),
                         ["decode", "masks", "prefill", "preprocess", "queue", "vision"])

        # Logs: every line of both processes is JSON; each request's lines carry its id.
        ids = {"obs-ok-1": 1, "obs-ok-2": 1, "obs-bad-server": 1, "obs-bad-gateway": 0, "obs-stats": 0}
        deadline = time.monotonic() + 10
        while True:
            gw_lines = json_lines(self.gateway.log_path)
            server_lines = json_lines(self.server.log_path)
            logged = {r.get("request_id") for r in gw_lines}
            if all(i in logged for i in ids) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        for rid, server_count in ids.items():
            with self.subTest(request_id=rid):
                gw = [r for r in gw_lines if rid in json.dumps(r)]
                self.assertEqual(len(gw), 1, gw)
                self.assertEqual(gw[0]["request_id"], rid)
                srv = [r for r in server_lines if rid in json.dumps(r)]
                self.assertEqual(len(srv), server_count, srv)
                for line in gw + srv:
                    self.assertEqual(line["request_id"], rid, line)
                    for key in ("ts", "level", "msg"):
                        self.assertIn(key, line)
        ok = [r for r in server_lines if r.get("request_id") == "obs-ok-1"][0]
        self.assertEqual((ok["method"], ok["model"], ok["code"]), ("Segment", "tiny", "OK"))
        self.assertGreater(ok["tokens"], 0)
        for key in ("duration_ms", "queue_ms", "preprocess_ms", "vision_ms", "prefill_ms", "decode_ms", "masks_ms"):
            self.assertIsInstance(ok[key], (int, float), key)
        bad = [r for r in server_lines if r.get("request_id") == "obs-bad-server"][0]
        self.assertEqual((bad["method"], bad["code"], bad["level"]), ("Segment", "INVALID_ARGUMENT", "warn"))
        self.assertIn("prompt", bad["error"])
        gw_ok = [r for r in gw_lines if r.get("request_id") == "obs-ok-1"][0]
        self.assertEqual((gw_ok["route"], gw_ok["status"], gw_ok["model"]), ("/segment", 200, "tiny"))
        for key in ("method", "path", "bytes", "duration_ms"):
            self.assertIn(key, gw_ok)
        self.assertEqual([r["status"] for r in gw_lines if r.get("request_id") == "obs-bad-gateway"], [400])

    def test_metrics_without_backend(self):
        """A gateway whose server is gone still answers /metrics: server_up 0 and its own metrics."""
        with gw_harness.Gateway("127.0.0.1:1") as gw:
            r = requests.get(f"{gw.base}/metrics", timeout=30)
            self.assertEqual(r.status_code, 200, r.text)
            m = parse_metrics(r.text)
            self.assertEqual(value(m, "paligemma_server_up"), 0)
            self.assertFalse([k for k in m if k[0].startswith("paligemma_server_") and k[0] != "paligemma_server_up"])
            self.assertIn("paligemma_gateway_http_requests_in_flight", {k[0] for k in m})
            json_lines(gw.log_path)


if __name__ == "__main__":
    unittest.main()
