"""Continuous batching through the real server: 8 clients with different prompts and lengths, decoded in
shared batches (--max_batch 4), each get exactly the engine CLI's answer for their own prompt."""

import concurrent.futures
import unittest

import harness

CASES = [("segment cat", 24), ("detect cat", 10), ("segment left ear", 17), ("caption en", 5),
         ("segment cat ; dog", 30), ("detect eye", 12), ("answer en what is this?", 8), ("segment nose", 21)]


class BatchingTest(harness.ServerTestCase):
    server_args = ("--max_batch", "4", "--max_queue", "16")

    def test_eight_different_concurrent_requests_equal_each_alone(self):
        expected = [harness.engine_cli(harness.IMAGE, p, n) for p, n in CASES]
        image = harness.read_image()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(
                lambda c: self.server.segment(prompt=c[0], image_data=image, max_new_tokens=c[1], timeout=120),
                CASES))
        for (prompt, _), got, want in zip(CASES, results, expected):
            self.assertEqual(got.text, want["text"], prompt)
            self.assertEqual(len(got.masks), len(want["masks"]), prompt)


if __name__ == "__main__":
    unittest.main()
