"""GET /docs renders Swagger UI in a real browser (Debian's headless chromium): after the page's scripts
ran, the DOM lists the hand-written /segment and the generated /v1/segment. A screenshot is kept under
build/artifacts/docs.png. The page needs no backend, so the gateway points at a closed port."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

import gw_harness

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the networking flags chromium keeps trying to reach Google's services on a closed network.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars"]


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class DocsTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(os.path.exists(CHROMIUM), "chromium is missing: run scripts/install-deps.sh")
        self.gateway = gw_harness.Gateway(f"127.0.0.1:{closed_port()}")
        self.addCleanup(self.gateway.stop)
        self.profile = tempfile.mkdtemp(prefix="pg-chromium-")
        self.addCleanup(shutil.rmtree, self.profile, True)
        self.url = f"http://127.0.0.1:{self.gateway.port}/docs"

    def chromium(self, *args):
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}", "--virtual-time-budget=15000",
                               *args, self.url], capture_output=True, timeout=120)

    def test_docs_renders_endpoints(self):
        out = self.chromium("--dump-dom")
        dom = out.stdout.decode(errors="replace")
        self.assertIn("swagger-ui", dom, out.stderr.decode(errors="replace")[-2000:])
        # Swagger UI renders each operation's path in an element with data-path.
        self.assertIn('data-path="/segment"', dom)
        self.assertIn('data-path="/v1/segment"', dom)
        self.assertIn('data-path="/v1/models"', dom)
        self.assertIn("PaliGemma Segmentation API", dom)

        os.makedirs(gw_harness.ARTIFACTS, exist_ok=True)
        shot = os.path.abspath(os.path.join(gw_harness.ARTIFACTS, "docs.png"))
        if os.path.exists(shot):
            os.remove(shot)
        out = self.chromium(f"--screenshot={shot}", "--window-size=1280,1600")
        self.assertTrue(os.path.exists(shot), out.stderr.decode(errors="replace")[-2000:])
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(shot), 10000)
        # The browser fetched the spec and the assets from the gateway.
        served = {(r.get("path"), r.get("status")) for r in map(json.loads, self.gateway.log().splitlines())}
        self.assertIn(("/openapi.json", 200), served)
        self.assertIn(("/docs/swagger-ui-bundle.js", 200), served)


if __name__ == "__main__":
    unittest.main()
