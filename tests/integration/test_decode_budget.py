"""Decompression bombs inside the pixel limit (files of 24-290 KB that really encode 7000 x 7000): they
decode, one decode's memory at a time within --decode_budget_mb, and 16 concurrent uploads of the 24 KB
GIF leave the server's peak RSS (VmHWM) under 1.5 GB with every request answered OK or busy - never an
out-of-memory kill. The bombs are written by bomb_images.py at test time."""

import concurrent.futures
import unittest

import grpc

import bomb_images
import harness

PROMPT = "segment cat"
SIDE = 7000
OK = grpc.StatusCode.OK
BUSY = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def segment_code(server, data):
    try:
        r = server.segment(prompt=PROMPT, image_data=data, max_new_tokens=2, timeout=120,
                           options=harness.pb.SegmentOptions(include_full_masks=False, include_image=False))
        assert (r.width, r.height) == (SIDE, SIDE), (r.width, r.height)
        return OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


class DecodeBombTest(harness.ServerTestCase):
    server_args = ()  # the defaults: --decode_budget_mb 512, --max_concurrent max(8, 2 x cores)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gif = bomb_images.gif_bomb(SIDE)

    def test_1_each_bomb_decodes_alone(self):
        bombs = {"gif": self.gif, "png": bomb_images.png_bomb(SIDE),
                 "progressive jpeg": bomb_images.progressive_jpeg_bomb(SIDE)}
        for name, data in bombs.items():
            with self.subTest(bomb=name):
                code, details = segment_code(self.server, data)
                self.assertEqual(code, OK, details)
                print(f"\n[measure] {name} bomb, {len(data)} bytes -> {SIDE}x{SIDE}: server VmHWM "
                      f"{vm_kib(self.server.proc.pid, 'VmHWM') // 1024} MB")

    def test_2_sixteen_concurrent_gif_bombs(self):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: segment_code(self.server, self.gif), range(16)))
        self.assertIsNone(self.server.proc.poll(), "the server died")
        codes = [c for c, _ in results]
        hwm = vm_kib(self.server.proc.pid, "VmHWM")
        print(f"\n[measure] 16 concurrent {len(self.gif)}-byte GIFs of {SIDE}x{SIDE}: "
              f"{codes.count(OK)} OK, {sum(c in BUSY for c in codes)} busy; server VmHWM {hwm // 1024} MB")
        for code, details in results:
            self.assertIn(code, BUSY | {OK}, details)
            if code != OK:
                self.assertIn("busy", details)
        self.assertGreaterEqual(codes.count(OK), 1)
        self.assertLessEqual(hwm, 1536 * 1024)
        # The server still answers normally afterwards.
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))


class SmallDecodeBudgetTest(harness.ServerTestCase):
    server_args = ("--decode_budget_mb", "100")

    def test_image_larger_than_the_whole_budget_is_refused_before_decoding(self):
        # A first request grows the peak RSS by its lazy initialisation; measure after it.
        r = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))
        before = vm_kib(self.server.proc.pid, "VmHWM")
        code, details = segment_code(self.server, bomb_images.gif_bomb(SIDE))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED, details)
        self.assertIn("--decode_budget_mb 100", details)
        # Refused from the header: no 441 MB decode happened.
        self.assertLess(vm_kib(self.server.proc.pid, "VmHWM") - before, 64 * 1024)


if __name__ == "__main__":
    unittest.main()
