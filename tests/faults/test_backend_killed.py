"""The server is killed with SIGKILL while a /segment request is in flight through the gateway: the gateway
answers that request 503 with {"status": "error", "detail": ...} (no hang, no 500); a server started again
on the same port is used by the same gateway, and /segment answers 200 again."""

import os
import threading
import time
import unittest

import requests

import fault_util
import gw_harness
import harness

PROMPT = "segment cat"
RECOVERY_BOUND_S = 60  # a hang detector, not a timing requirement: the time taken is printed


class BackendKilledMidRequestTest(unittest.TestCase):
    def setUp(self):
        self.models = harness.models_dir_with_tiny(self)
        # 127.0.0.1 image URLs allowed so that a request can be held in flight on a stalled image_url.
        self.args = ("--allowed_url_cidrs", "127.0.0.1/32", "--fetch_timeout_ms", "60000")
        self.server = harness.Server(self.models, *self.args)
        self.addCleanup(lambda: self.server.stop())
        self.gateway = gw_harness.Gateway(self.server.address)
        self.addCleanup(self.gateway.stop)

    def post_file(self, timeout=60):
        return requests.post(f"{self.gateway.base}/segment",
                             files={"image_file": ("c.png", harness.read_image(), "image/png")},
                             data={"prompt": PROMPT, "max_new_tokens": "4"}, timeout=timeout)

    def test_kill_in_flight_then_restart_on_same_port(self):
        self.assertEqual(self.post_file().status_code, 200)
        stall = fault_util.stalled_server()
        self.addCleanup(stall.close)
        result = {}

        def in_flight():
            t0 = time.monotonic()
            try:
                result["response"] = requests.post(f"{self.gateway.base}/segment",
                                                   data={"prompt": PROMPT, "image_url": stall.url()},
                                                   timeout=120)
            except requests.RequestException as e:
                result["error"] = e
            result["seconds"] = time.monotonic() - t0

        t = threading.Thread(target=in_flight, daemon=True)
        t.start()
        # The server is fetching the image: the request is in flight inside it.
        self.assertTrue(stall.got_request.wait(30), "the server never fetched the stalled image_url")
        port = self.server.port
        t_kill = time.monotonic()
        self.server.proc.kill()
        self.server.proc.wait(timeout=30)
        t.join(120)
        self.assertFalse(t.is_alive(), "the in-flight request hung after the server was killed")
        self.assertNotIn("error", result, result.get("error"))
        r = result["response"]
        print(f"\n[measure] in-flight request answered {r.status_code} "
              f"{(time.monotonic() - t_kill) * 1000:.0f} ms after SIGKILL")
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        body = r.json()
        self.assertEqual(set(body), {"status", "detail"}, body)
        self.assertEqual(body["status"], "error")
        self.assertTrue(body["detail"], body)

        # While the server is down: 503 at once, same shape.
        r = self.post_file()
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.json()["status"], "error")

        self.server.stop()
        self.server = harness.Server(self.models, *self.args, "--port", str(port))
        self.assertEqual(self.server.port, port)
        t0 = time.monotonic()
        codes = []
        while True:
            r = self.post_file()
            codes.append(r.status_code)
            if r.status_code == 200 or time.monotonic() - t0 > RECOVERY_BOUND_S:
                break
            time.sleep(0.2)
        print(f"[measure] 200 again {(time.monotonic() - t0) * 1000:.0f} ms after the restart "
              f"(answers on the way: {codes})")
        self.assertEqual(r.status_code, 200, r.text)
        self.assertIn("masks", r.json())
        self.assertTrue(all(c in (200, 503) for c in codes), codes)
        self.assertEqual(requests.get(f"{self.gateway.base}/readyz", timeout=30).status_code, 200)


if __name__ == "__main__":
    unittest.main()
