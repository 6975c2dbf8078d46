"""paligemma-client: the overlay it draws and its gRPC/REST calls.

With random weights the tiny model answers no masks, so the overlay code is driven by crafted answers (the
JSON the gateway returns, read with --from-json) as well as by a live call to the real server.
Run: /usr/bin/python3 -m unittest discover -s tests/delivery -p 'test_client.py' (PG_BUILD_DIR=build).
"""
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("PG_BUILD_DIR", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
CLIENT = ROOT / "client" / "paligemma-client"
IMAGE = ROOT / "tests" / "fixtures" / "images" / "chelsea.png"
sys.path.insert(0, str(ROOT / "client"))
import paligemma_client  # noqa: E402


def png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def disc_mask(size=64):
    m = Image.new("L", (size, size), 0)
    ImageDraw.Draw(m).ellipse([8, 8, size - 8, size - 8], fill=255)
    return m


def run_client(*args):
    return subprocess.run([str(CLIENT), *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PG_PROTO_PYTHON": str(BUILD / "python")})


class CraftedAnswerTest(unittest.TestCase):
    """The overlay of a known answer: same size as the input, pixels inside each mask changed."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.image = Image.open(IMAGE).convert("RGB")

    def tearDown(self):
        self.tmp.cleanup()

    def check_overlay(self, answer, inside_masks):
        (self.dir / "answer.json").write_text(json.dumps(answer))
        r = run_client(IMAGE, "segment cat", "--from-json", self.dir / "answer.json", "--out", self.dir / "out")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"{len(answer['masks'])} object(s)", r.stdout)
        overlay = Image.open(self.dir / "out" / "overlay.png").convert("RGB")
        self.assertEqual(overlay.size, self.image.size)
        w, h = self.image.size
        src, out = self.image.load(), overlay.load()
        for mask in inside_masks:  # full-size 'L' images, 255 inside
            m = mask.load()
            inside = [(x, y) for y in range(h) for x in range(w) if m[x, y] > 127]
            self.assertTrue(inside)
            changed = sum(1 for p in inside if src[p] != out[p])
            self.assertEqual(changed, len(inside), "every pixel inside a mask is tinted")
        # Far from every box, nothing changed.
        boxes = [m["box"] for m in answer["masks"]]
        far = [(x, y) for y in range(0, h, 7) for x in range(0, w, 7)
               if not any(b[0] - 20 <= x <= b[2] + 20 and b[1] - 30 <= y <= b[3] + 20 for b in boxes)]
        self.assertTrue(far)
        self.assertTrue(all(src[p] == out[p] for p in far))
        return overlay

    def test_mask_inside_box(self):
        box = [60, 50, 220, 210]
        answer = {"text": "<loc0100><loc0100><loc0500><loc0500> cat", "masks": [{
            "label": "cat", "box": box, "coordinates": box, "has_mask": True,
            "mask": base64.b64encode(png_bytes(disc_mask())).decode()}]}
        expected = paligemma_client.mask_in_image(paligemma_client.segments_from_json(answer)[0],
                                                  self.image.size)
        self.check_overlay(answer, [expected])
        for name in ("mask-1.png",):
            self.assertEqual(Image.open(self.dir / "out" / name).size, (64, 64))

    def test_full_masks_and_two_objects(self):
        w, h = self.image.size
        full = Image.new("L", (w, h), 0)
        ImageDraw.Draw(full).rectangle([250, 60, 330, 200], fill=255)
        second = Image.new("L", (w, h), 0)
        ImageDraw.Draw(second).ellipse([30, 250, 150, 330], fill=255)
        answer = {"masks": [
            {"label": "left ear", "box": [250, 60, 331, 201], "has_mask": True,
             "mask": base64.b64encode(png_bytes(disc_mask())).decode(),
             "full_mask": base64.b64encode(png_bytes(full)).decode()},
            {"label": "nose", "box": [30, 250, 151, 331], "has_mask": True,
             "full_mask": base64.b64encode(png_bytes(second)).decode()}]}
        self.check_overlay(answer, [full, second])
        self.assertTrue((self.dir / "out" / "full-mask-1.png").exists())
        self.assertTrue((self.dir / "out" / "full-mask-2.png").exists())

    def test_box_without_mask_is_outlined(self):
        answer = {"masks": [{"label": "cat", "box": [100, 100, 200, 200], "has_mask": False}]}
        (self.dir / "a.json").write_text(json.dumps(answer))
        r = run_client(IMAGE, "--from-json", self.dir / "a.json", "--out", self.dir / "o")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = Image.open(self.dir / "o" / "overlay.png").convert("RGB")
        self.assertNotEqual(out.getpixel((150, 100)), self.image.getpixel((150, 100)))  # the outline
        self.assertEqual(out.getpixel((150, 150)), self.image.getpixel((150, 150)))  # no tint inside


@unittest.skipUnless((BUILD / "paligemma-server").exists() and (BUILD / "tiny-bundle").exists(),
                     "needs a build with the tiny bundle (ctest export_tiny_bundle)")
class LiveServerTest(unittest.TestCase):
    """The client against the real server on the tiny model (random weights: usually no objects)."""

    def test_grpc_call_writes_overlay(self):
        with tempfile.TemporaryDirectory() as tmp:
            models = Path(tmp) / "models"
            (models / "bundles").mkdir(parents=True)
            os.symlink(BUILD / "tiny-bundle", models / "bundles" / "tiny")
            server = subprocess.Popen(
                [str(BUILD / "paligemma-server"), "--host", "127.0.0.1", "--port", "0", "--models_dir",
                 str(models), "--default_model", "tiny", "--hf_token_file="],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                line = server.stdout.readline().strip()
                self.assertTrue(line.startswith("listening on "), line)
                target = line.split()[-1]
                r = run_client(IMAGE, "segment cat", "--server", target, "--max-new-tokens", "12",
                               "--out", Path(tmp) / "out")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn("answer:", r.stdout)
                overlay = Image.open(Path(tmp) / "out" / "overlay.png")
                self.assertEqual(overlay.size, Image.open(IMAGE).size)
            finally:
                server.terminate()
                server.wait(timeout=60)


if __name__ == "__main__":
    unittest.main()
