"""python3 -m exporter --make-random: an HF-layout random checkpoint that the exporter accepts and whose
activations stay finite."""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from exporter.bundle import load_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "paligemma2-tiny")
VAE = os.path.join(ROOT, "tests", "fixtures", "vae", "vae-oid-random.npz")


def run(*args):
    return subprocess.run([sys.executable, "-m", "exporter", *args], cwd=ROOT, capture_output=True, text=True)


class MakeRandomTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ckpt = os.path.join(cls.tmp.name, "ckpt")
        # 28 px: 4 image tokens; small shards force several files and an index.
        from exporter.make_random import make_random
        cls.info = make_random(os.path.join(TINY, "config.json"), cls.ckpt, image_size=28, shard_bytes=4 << 20)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_layout_matches_the_hub(self):
        index = json.load(open(os.path.join(self.ckpt, "model.safetensors.index.json")))
        fixture = json.load(open(os.path.join(TINY, "model.safetensors.index.json")))
        self.assertEqual(set(index["weight_map"]), set(fixture["weight_map"]))
        self.assertGreater(self.info["shards"], 1)
        for fn in set(index["weight_map"].values()):
            self.assertTrue(os.path.exists(os.path.join(self.ckpt, fn)), fn)
        pre = json.load(open(os.path.join(self.ckpt, "preprocessor_config.json")))
        self.assertEqual(pre["size"], {"height": 28, "width": 28})
        self.assertEqual(pre["image_seq_length"], 4)
        cfg = json.load(open(os.path.join(self.ckpt, "config.json")))
        self.assertEqual(cfg["vision_config"]["num_image_tokens"], 4)
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            self.assertTrue(os.path.exists(os.path.join(self.ckpt, fn)))

    def test_exports_and_runs_finite(self):
        out = os.path.join(self.tmp.name, "bundle")
        r = run(self.ckpt, "--vae", VAE, "--out", out, "--dtype", "float32", "--quiet")
        self.assertEqual(r.returncode, 0, r.stderr)
        import torch
        manifest = json.load(open(os.path.join(out, "manifest.json")))
        self.assertEqual(manifest["image"]["num_image_tokens"], 4)
        vision = load_module(out, "vision")
        lang = load_module(out, "language")
        torch.manual_seed(0)
        feats = vision(torch.rand(1, 3, 28, 28) * 2 - 1)
        self.assertTrue(torch.isfinite(feats).all())
        t = manifest["text"]
        k = torch.zeros(t["num_layers"], 1, t["num_kv_heads"], 16, t["head_dim"])
        v = torch.zeros_like(k)
        ids = torch.tensor([[2, 100, 200, 108]])
        hidden = lang.prefill(feats, lang.embed(ids), torch.tensor([4]), torch.tensor([0]), k, v)
        logits = lang.logits(hidden)
        self.assertTrue(torch.isfinite(logits).all())
        self.assertGreater(float(logits.std()), 0.01)  # not degenerate
        step = lang.decode(torch.tensor([5]), torch.tensor([8]), torch.tensor([0]), k, v)
        hid = lang.decode_hidden(torch.tensor([5]), torch.tensor([8]), torch.tensor([0]), k, v)
        self.assertTrue(torch.equal(step, lang.logits(hid)))

    def test_cli_errors(self):
        r = run("--make-random", os.path.join(self.tmp.name, "missing.json"), "--out", os.path.join(self.tmp.name, "x"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot read", r.stderr)
        r = run("--out", os.path.join(self.tmp.name, "x"))
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()
