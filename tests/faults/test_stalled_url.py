"""image_url peers that misbehave: one accepts and never answers, one streams bytes forever (slowly).
Segment gives up with the fetch timeout error (--fetch_timeout_ms 1500), the server closes every such
connection, and no thread stays stuck: the server's thread count (/proc/PID/status Threads) comes back to its
baseline once the requests are over."""

import concurrent.futures
import time
import unittest

import grpc

import fault_util
import harness

PROMPT = "segment cat"
FETCH_TIMEOUT_MS = 1500
CLIENT_TIMEOUT_S = 60  # a hang detector far above the fetch timeout; the times taken are printed
PARALLEL = 4


class StalledImageUrlTest(harness.ServerTestCase):
    server_args = ("--allowed_url_cidrs", "127.0.0.1/32", "--fetch_timeout_ms", str(FETCH_TIMEOUT_MS),
                   "--connect_timeout_ms", "1000")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        pid = cls.server.proc.pid
        # Warm up (model loaded, pools started) with the same concurrency as the faults below.
        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(lambda _: cls.server.segment(prompt=PROMPT, image_data=harness.read_image(),
                                                       max_new_tokens=2, timeout=120), range(PARALLEL)))
        time.sleep(2)
        cls.baseline = fault_util.proc_status(pid, "Threads")
        print(f"\n[threads] baseline {cls.baseline}: {fault_util.thread_names(pid)}")

    def run_faulty(self, peer, name):
        pid = self.server.proc.pid

        def one(_):
            t0 = time.monotonic()
            try:
                self.server.segment(prompt=PROMPT, image_url=peer.url(), max_new_tokens=2,
                                    timeout=CLIENT_TIMEOUT_S)
                return None, "OK", time.monotonic() - t0
            except grpc.RpcError as e:
                return e.code(), e.details(), time.monotonic() - t0

        with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(one, range(PARALLEL)))
        during = fault_util.proc_status(pid, "Threads")
        for code, details, seconds in results:
            print(f"[{name}] {code.name if code else 'OK'} after {seconds * 1000:.0f} ms: {details}")
            # The fetch timeout (shorter than the request's deadline) is the request's fault: INVALID_ARGUMENT
            # with the timeout named, not the client's own deadline.
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, details)
            self.assertIn(f"timed out after {FETCH_TIMEOUT_MS} ms", details)
        self.assertEqual(peer.counts()[0], PARALLEL)
        # Every connection to the peer was closed by the server.
        closed = fault_util.wait_until(lambda: peer.counts()[1] == PARALLEL, 10)
        self.assertTrue(closed, f"connections accepted/closed by the server: {peer.counts()}")
        t0 = time.monotonic()
        back = fault_util.wait_until(lambda: fault_util.proc_status(pid, "Threads") <= self.baseline, 30)
        now = fault_util.proc_status(pid, "Threads")
        print(f"[{name}] threads: baseline {self.baseline}, right after {during}, now {now} "
              f"(after {time.monotonic() - t0:.1f} s)")
        self.assertTrue(back, f"threads stay above the baseline {self.baseline}: {now}: "
                              f"{fault_util.thread_names(pid)}")
        # And the server still answers.
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=2)
        self.assertEqual(r.model_id, "tiny")

    def test_stalled_peer(self):
        peer = fault_util.stalled_server()
        self.addCleanup(peer.close)
        self.run_faulty(peer, "stalled")

    def test_endless_peer(self):
        peer = fault_util.endless_server()
        self.addCleanup(peer.close)
        self.run_faulty(peer, "endless")


if __name__ == "__main__":
    unittest.main()
