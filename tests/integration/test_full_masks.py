"""Full-size masks of a 7000 x 7000 image over the wire: the tiny model answers "segment wheel" about a
white 7000 x 7000 PNG (160 KB) with 12 boxes, so the response carries 12 full masks of 49 M pixels each.
They decode with PIL to 8-bit greyscale images of the original size (all zero: the boxes have no
segmentation tokens); --max_full_mask_pixels bounds how many come back. The cost with and without full
masks is printed (the encoder streams rows into zlib; before, stb_image_write held and filtered each
whole mask)."""

import io
import time
import unittest

import numpy as np
from PIL import Image

import harness

SIDE = 7000
PROMPT = "segment wheel"


def white_png():
    buf = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (255, 255, 255)).save(buf, "PNG")
    return buf.getvalue()


def segment(server, data, full_masks):
    t0 = time.monotonic()
    r = server.segment(prompt=PROMPT, image_data=data, max_new_tokens=256, timeout=300,
                       options=harness.pb.SegmentOptions(include_full_masks=full_masks, include_image=False))
    return r, time.monotonic() - t0


class FullMaskTest(harness.ServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = white_png()

    def test_full_masks_decode_and_cost(self):
        without, t_without = segment(self.server, self.data, False)
        with_masks, t_with = segment(self.server, self.data, True)
        self.assertEqual(with_masks.text, without.text)
        self.assertGreaterEqual(len(with_masks.masks), 6, with_masks.text[:200])
        # The default --max_full_mask_pixels (300 M) holds six 7000 x 7000 masks; the rest come without.
        fits = min(len(with_masks.masks), 300_000_000 // (SIDE * SIDE))
        self.assertEqual([bool(m.full_mask) for m in with_masks.masks],
                         [True] * fits + [False] * (len(with_masks.masks) - fits))
        for m in with_masks.masks[:fits]:
            self.assertEqual(m.full_mask[:8], b"\x89PNG\r\n\x1a\n")
            img = Image.open(io.BytesIO(m.full_mask))
            self.assertEqual((img.mode, img.size), ("L", (SIDE, SIDE)))
            a = np.asarray(img)
            if not m.has_mask:
                self.assertEqual(int(a.max()), 0)
            self.assertTrue(set(np.unique(a).tolist()) <= {0, 255})
        for m in without.masks:
            self.assertEqual(m.full_mask, b"")
        print(f"\n[measure] {len(with_masks.masks)} objects on {SIDE}x{SIDE}: {t_without:.2f} s without full masks "
              f"({without.ByteSize()} B), {t_with:.2f} s with ({with_masks.ByteSize()} B; masks_ms "
              f"{with_masks.timings.masks_ms:.0f}); ratio {t_with / t_without:.2f}")


class FullMaskBudgetTest(harness.ServerTestCase):
    server_args = ("--max_full_mask_pixels", str(5 * SIDE * SIDE))

    def test_masks_past_the_budget_have_no_full_mask(self):
        r, _ = segment(self.server, white_png(), True)
        self.assertGreater(len(r.masks), 5, r.text[:200])
        got = [len(m.full_mask) > 0 for m in r.masks]
        self.assertEqual(got, [True] * 5 + [False] * (len(r.masks) - 5))
        for m in r.masks:
            self.assertEqual(len(m.box), 4)
            self.assertTrue(m.mask)  # the 64x64 mask is always there


if __name__ == "__main__":
    unittest.main()
