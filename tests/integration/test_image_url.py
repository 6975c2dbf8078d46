"""image_url: fetched from a local HTTP server (only with --allow_private_urls) giving the same answer as
image bytes; the SSRF guard refusing loopback, private, link-local/metadata and IPv6 loopback addresses,
names resolving to loopback and redirects to them; size and redirect limits."""

import os
import shutil
import tempfile
import time
import unittest

import grpc

import harness

PROMPT = "segment cat"


class AllowedImageUrlTest(harness.ServerTestCase):
    server_args = ("--allow_private_urls", "--max_image_bytes", "2000000", "--max_redirects", "2")

    def setUp(self):
        self.http = harness.file_server(self, os.path.join(harness.FIXTURES, "images"))

    def test_url_same_answer_as_bytes(self):
        by_bytes = self.server.segment(prompt=PROMPT, image_data=harness.read_image(), max_new_tokens=24)
        by_url = self.server.segment(prompt=PROMPT, image_url=self.http.url("/chelsea.png"), max_new_tokens=24)
        self.assertEqual(by_url.text, by_bytes.text)
        self.assertEqual(by_url.image, by_bytes.image)
        self.assertGreater(by_url.timings.fetch_ms, 0)

    def test_redirect_followed_within_limit(self):
        hop = harness.redirect_server(self, self.http.url("/chelsea.png"))
        r = self.server.segment(prompt=PROMPT, image_url=hop.url("/x"), max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))

    def test_too_many_redirects(self):
        hop1 = harness.redirect_server(self, self.http.url("/chelsea.png"))
        hop2 = harness.redirect_server(self, hop1.url("/a"))
        hop3 = harness.redirect_server(self, hop2.url("/b"))
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=hop3.url("/c"), max_new_tokens=2)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("redirect", e.exception.details())

    def test_oversized_body_refused_while_streaming(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, "big.png"), "wb") as f:
            f.write(b"\0" * 3_000_000)
        big = harness.file_server(self, d)
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=big.url("/big.png"), max_new_tokens=2)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("limit", e.exception.details())

    def test_http_error_and_unreachable(self):
        for url in (self.http.url("/missing.png"), "http://127.0.0.1:9/x.png"):
            with self.assertRaises(grpc.RpcError) as e:
                self.server.segment(prompt=PROMPT, image_url=url, max_new_tokens=2)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, url)


class SsrfGuardTest(harness.ServerTestCase):
    # 127.0.0.2 stands in for a public host: it is explicitly allowed, so a redirect from it to 127.0.0.1
    # tests the check after redirects.
    server_args = ("--allowed_url_cidrs", "127.0.0.2/32")

    def setUp(self):
        self.http = harness.file_server(self, os.path.join(harness.FIXTURES, "images"))

    def refused(self, url):
        t0 = time.monotonic()
        with self.assertRaises(grpc.RpcError) as e:
            self.server.segment(prompt=PROMPT, image_url=url, max_new_tokens=2, timeout=30)
        self.assertEqual(e.exception.code(), grpc.StatusCode.PERMISSION_DENIED,
                         f"{url}: {e.exception.details()}")
        self.assertIn("--allow_private_urls", e.exception.details())
        self.assertLess(time.monotonic() - t0, 10)

    def test_loopback_private_metadata_refused(self):
        port = self.http.port
        for url in (f"http://127.0.0.1:{port}/chelsea.png", "http://10.0.0.1/x.png",
                    "http://169.254.169.254/latest/meta-data/", f"http://[::1]:{port}/chelsea.png",
                    "http://[::ffff:127.0.0.1]/x.png", "http://0.0.0.0/x.png", "http://192.168.1.1/"):
            self.refused(url)

    def test_name_resolving_to_loopback_refused(self):
        self.refused(f"http://localhost:{self.http.port}/chelsea.png")

    def test_redirect_to_loopback_refused(self):
        allowed_hop = harness.redirect_server(self, self.http.url("/chelsea.png"), host="127.0.0.2")
        self.refused(allowed_hop.url("/x"))

    def test_allowed_range_still_works(self):
        images = harness.file_server(self, os.path.join(harness.FIXTURES, "images"), host="127.0.0.2")
        r = self.server.segment(prompt=PROMPT, image_url=images.url("/chelsea.png"), max_new_tokens=2)
        self.assertEqual((r.width, r.height), (451, 300))


if __name__ == "__main__":
    unittest.main()
