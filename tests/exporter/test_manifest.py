"""The bundle's files and manifest.json (docs/bundle-format.md), written by the CLI; --force replacement."""

import hashlib
import json
import os
import tempfile
import unittest

import torch

from tests.exporter import helpers as H
from exporter.bundle import load_module


class Manifest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = os.path.join(cls.tmp.name, "bundle")
        r = H.run_cli(H.TINY, "--vae", H.VAE_RANDOM, "--out", cls.out, "--model-id", "google/paligemma2-3b-mix-448",
                      "--revision", "abc123")
        assert r.returncode == 0, r.stderr
        cls.m = H.read_manifest(cls.out)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_files(self):
        modules = ["language.pt", "language.safetensors", "vae.pt", "vae.safetensors", "vision.pt",
                   "vision.safetensors"]
        self.assertEqual(sorted(os.listdir(self.out)), sorted(modules + ["manifest.json", "tokenizer.json"]))
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["bundle"])  # no temp dirs left
        self.assertEqual(sorted(self.m["files"]), sorted(modules + ["tokenizer.json"]))
        for fn, info in self.m["files"].items():
            with open(os.path.join(self.out, fn), "rb") as f:
                data = f.read()
            self.assertEqual(info["bytes"], len(data), fn)
            self.assertEqual(info["sha256"], hashlib.sha256(data).hexdigest(), fn)
        with open(os.path.join(H.TINY, "tokenizer.json"), "rb") as a, open(os.path.join(self.out, "tokenizer.json"), "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_fields(self):
        m = self.m
        self.assertEqual(m["format_version"], 3)
        self.assertEqual(m["exporter_version"], "0.4.0")
        self.assertEqual(m["source"], {"model_id": "google/paligemma2-3b-mix-448", "revision": "abc123", "path": H.TINY})
        self.assertEqual(m["dtype"], "bfloat16")
        self.assertEqual(m["image"], {"size": 56, "patch_size": 14, "num_image_tokens": 16, "mean": [0.5, 0.5, 0.5],
                                      "std": [0.5, 0.5, 0.5], "resample": "bicubic",
                                      "rescale_factor": 0.00392156862745098})
        self.assertEqual(m["text"], {"vocab_size": 257216, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
                                     "num_kv_heads": 2, "head_dim": 16, "sliding_window": 4096,
                                     "max_position_embeddings": 8192})
        self.assertEqual(m["vision"], {"hidden_size": 48, "num_layers": 2, "num_heads": 4})
        self.assertEqual(m["tokens"], {"bos": 2, "eos": 1, "pad": 0, "image": 257152, "newline": 108,
                                       "loc0": 256000, "seg0": 257024})
        with open(os.path.join(H.TINY, "tokenizer.json")) as f:
            tok = json.load(f)
        by_content = {t["content"]: t["id"] for t in tok["added_tokens"]}
        self.assertEqual(by_content["<seg000>"], m["tokens"]["seg0"])
        self.assertEqual(tok["model"]["vocab"]["\n"], m["tokens"]["newline"])

    def test_archives_hold_code_not_weights(self):
        # Format 2: the weights live in the .safetensors files; each archive keeps zero-stride placeholders.
        for name in ("vision", "language", "vae"):
            raw = torch.jit.load(os.path.join(self.out, name + ".pt"))
            params = list(raw.named_parameters())
            self.assertTrue(params)
            for pname, p in params:
                self.assertTrue(all(s == 0 for s in p.stride()), pname)
            self.assertLess(os.path.getsize(os.path.join(self.out, name + ".pt")), 64 << 10, name)
            with open(os.path.join(self.out, name + ".safetensors"), "rb") as f:
                n = int.from_bytes(f.read(8), "little")
            self.assertEqual((8 + n) % 64, 0, name)  # the data starts 64-byte aligned

    def test_modules_interface(self):
        vis = load_module(self.out, "vision")
        lang = load_module(self.out, "language")
        vae = load_module(self.out, "vae")
        for mod in (vis, lang):
            self.assertTrue(all(p.dtype == torch.bfloat16 for p in mod.parameters()))
        # The VAE is always float32 (docs/bundle-format.md).
        self.assertTrue(all(p.dtype == torch.float32 for p in vae.parameters()))
        with torch.no_grad():
            f = vis(torch.zeros(2, 3, 56, 56, dtype=torch.bfloat16))
            self.assertEqual(tuple(f.shape), (2, 16, 32))
            e = lang.embed(torch.tensor([[2, 108]]))
            self.assertEqual((tuple(e.shape), e.dtype), ((1, 2, 32), torch.bfloat16))
            kc, vc = H.new_cache(self.m, 2, 32, torch.bfloat16)
            h = lang.prefill(f[:1], e, torch.tensor([2]), torch.tensor([1]), kc, vc)
            self.assertEqual(tuple(h.shape), (1, 18, 32))
            self.assertEqual(tuple(lang.logits(h).shape), (1, 18, 257216))
            self.assertEqual(tuple(lang.decode(torch.tensor([5]), torch.tensor([18]), torch.tensor([1]), kc, vc).shape), (1, 257216))
            self.assertEqual(tuple(vae(torch.zeros(3, 16, dtype=torch.int64)).shape), (3, 64, 64))

    def test_force_replaces(self):
        out = os.path.join(self.tmp.name, "replace", "bundle")
        os.makedirs(out)
        with open(os.path.join(out, "stale.txt"), "w") as f:
            f.write("old")
        m = H.export(H.TINY, H.VAE_RANDOM, out, force=True, dtype="float16")
        self.assertEqual(m["dtype"], "float16")
        self.assertNotIn("stale.txt", os.listdir(out))
        self.assertEqual(os.listdir(os.path.dirname(out)), ["bundle"])
        # An existing but empty folder needs no --force.
        empty = os.path.join(self.tmp.name, "empty")
        os.makedirs(empty)
        H.export(H.TINY, H.VAE_RANDOM, empty, force=False)
        self.assertIn("manifest.json", os.listdir(empty))


if __name__ == "__main__":
    unittest.main()
