"""SIGTERM under load: with several long requests in flight (through the gateway and over gRPC directly),
SIGTERM makes the server drain: every in-flight request completes (200 / OK), requests sent after the signal
are refused (UNAVAILABLE; 503 through the gateway; connection refused on a new channel), and the process exits
0 within --drain_timeout_s."""

import concurrent.futures
import socket
import time
import unittest

import grpc
import requests

import fault_util
import gw_harness
import harness

PROMPT = "segment cat"
DRAIN_TIMEOUT_S = 90
LONG_TOKENS = 400  # the tiny model never stops early: each request generates exactly this many tokens
IN_FLIGHT_GRPC = 3
IN_FLIGHT_GATEWAY = 3


class SigtermDrainTest(unittest.TestCase):
    def setUp(self):
        self.models = harness.models_dir_with_tiny(self)
        self.server = harness.Server(self.models, "--drain_timeout_s", str(DRAIN_TIMEOUT_S), "--max_batch", "8")
        self.addCleanup(self.server.stop)
        self.gateway = gw_harness.Gateway(self.server.address)
        self.addCleanup(self.gateway.stop)

    def draining(self):
        return "draining" in self.server.log()

    def test_sigterm_drains_in_flight_refuses_new_exits_zero(self):
        # Warm-up: the model is loaded, and one long request shows how long the in-flight ones take.
        t0 = time.monotonic()
        self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=LONG_TOKENS,
                            timeout=300)
        alone_s = time.monotonic() - t0
        print(f"\n[measure] one request of {LONG_TOKENS} tokens alone: {alone_s:.2f} s")
        image = harness.read_image()
        pool = concurrent.futures.ThreadPoolExecutor(IN_FLIGHT_GRPC + IN_FLIGHT_GATEWAY)
        self.addCleanup(pool.shutdown)

        def via_grpc(i):
            r = self.server.segment(prompt=f"{PROMPT} {i}", image_data=image, max_new_tokens=LONG_TOKENS,
                                    timeout=DRAIN_TIMEOUT_S + 60)
            return "OK", time.monotonic(), r.timings.total_ms

        def via_gateway(i):
            r = requests.post(f"{self.gateway.base}/segment",
                              files={"image_file": ("c.png", image, "image/png")},
                              data={"prompt": f"detect cat {i}", "max_new_tokens": str(LONG_TOKENS)},
                              timeout=DRAIN_TIMEOUT_S + 60)
            return r.status_code, time.monotonic(), None

        futures = [pool.submit(via_grpc, i) for i in range(IN_FLIGHT_GRPC)]
        futures += [pool.submit(via_gateway, i) for i in range(IN_FLIGHT_GATEWAY)]
        # Let every request reach the server and start generating (each takes several times this long
        # with the others beside it; checked below from the server's own timings).
        time.sleep(min(1.0, alone_s / 3))
        self.assertFalse(any(f.done() for f in futures), "requests finished before the signal")
        t_signal = time.monotonic()
        self.server.proc.send_signal(15)
        self.assertTrue(fault_util.wait_until(self.draining, 10), self.server.log())
        time.sleep(0.3)  # the log line comes just before Shutdown() stops accepting

        # New requests after the signal: refused, on the old channel, on a new one, and through the gateway.
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_data=image, max_new_tokens=2, timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, e.exception.details())
        with grpc.insecure_channel(self.server.address) as fresh:
            call = fresh.unary_unary("/paligemma.v1.SegmentService/Segment",
                                     request_serializer=harness.pb.SegmentRequest.SerializeToString,
                                     response_deserializer=harness.pb.SegmentResponse.FromString)
            with self.assertRaises(grpc.RpcError) as e:
                call(harness.pb.SegmentRequest(prompt=PROMPT, image_data=image, max_new_tokens=2), timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE, e.exception.details())
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", self.server.port), timeout=5).close()
        r = requests.post(f"{self.gateway.base}/segment", files={"image_file": ("c.png", image, "image/png")},
                          data={"prompt": PROMPT, "max_new_tokens": "2"}, timeout=30)
        self.assertEqual(r.status_code, 503, r.text)
        self.assertEqual(r.json()["status"], "error")
        refused_s = time.monotonic() - t_signal

        results = [f.result(timeout=DRAIN_TIMEOUT_S + 60) for f in futures]
        code = self.server.proc.wait(timeout=DRAIN_TIMEOUT_S + 30)
        exit_s = time.monotonic() - t_signal
        for status, done, total_ms in results:
            line = f"[in flight] {status}, done {done - t_signal:.2f} s after SIGTERM"
            if total_ms is not None:
                line += f", server-side {total_ms / 1000:.2f} s (started {done - total_ms / 1000 - t_signal:+.2f} s)"
            print(line)
        print(f"[measure] new requests refused within {refused_s:.2f} s; exit {code} {exit_s:.2f} s after "
              f"SIGTERM (drain timeout {DRAIN_TIMEOUT_S} s)")
        self.assertEqual([r[0] for r in results], ["OK"] * IN_FLIGHT_GRPC + [200] * IN_FLIGHT_GATEWAY)
        # The gRPC ones were in flight at the signal: the server started them before it.
        for status, done, total_ms in results[:IN_FLIGHT_GRPC]:
            self.assertLess(done - total_ms / 1000, t_signal)
        # At least one finished well after the signal, i.e. the drain waited for it.
        self.assertTrue(any(done > t_signal for _, done, _ in results))
        self.assertEqual(code, 0, self.server.log())
        self.assertIn("drained, exiting", self.server.log())


if __name__ == "__main__":
    unittest.main()
