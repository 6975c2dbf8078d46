"""Checkpoint layouts and dtypes the exporter accepts: each must give the same model as the fixture."""

import hashlib
import json
import os
import shutil
import tempfile
import unittest

import torch

from tests.exporter import helpers as H
from exporter.bundle import load_module


class InputVariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.base = os.path.join(cls.tmp.name, "base")
        H.export_tiny(cls.base, dtype="float32")
        cls.base_feats, cls.base_logits = H.prefix_logits(cls.base)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check_same(self, bundle, tol=0.0):
        feats, logits = H.prefix_logits(bundle)
        self.assertLessEqual((feats - self.base_feats).abs().max().item(), tol)
        self.assertLessEqual((logits - self.base_logits).abs().max().item(), tol)

    def export_variant(self, name, **kw):
        ck = H.make_variant(os.path.join(self.tmp.name, name + "-ckpt"), link_small=True, **kw)
        out = os.path.join(self.tmp.name, name)
        return ck, out

    def test_default_dtype_is_checkpoint_dtype(self):
        out = os.path.join(self.tmp.name, "bf16")
        m = H.export_tiny(out)
        self.assertEqual(m["dtype"], "bfloat16")
        lang = load_module(out, "language")
        self.assertEqual(lang.embed_tokens.dtype, torch.bfloat16)
        self.check_same(out, 0.0)  # bf16 weights are exact in float32

    def test_single_file(self):
        ck, out = self.export_variant("single")
        self.assertTrue(os.path.isfile(os.path.join(ck, "model.safetensors")))
        H.export_tiny(out, checkpoint=ck, dtype="float32")
        self.check_same(out)

    def test_float32_checkpoint(self):
        ck, out = self.export_variant("f32", dtype=torch.float32, sharded=True,
                                      config_edit=lambda c: c.update(torch_dtype="float32"))
        m = H.export_tiny(out, checkpoint=ck)
        self.assertEqual(m["dtype"], "float32")
        self.check_same(out)

    def test_float16_checkpoint(self):
        ck, out = self.export_variant("f16", dtype=torch.float16)
        m = H.export_tiny(out, checkpoint=ck)
        self.assertEqual(m["dtype"], "float16")
        lang = load_module(out, "language")
        self.assertEqual(lang.embed_tokens.dtype, torch.float16)
        self.check_same(out, 1e-4)

    def test_new_style_names(self):
        ck, out = self.export_variant("new", new_names=True)
        H.export_tiny(out, checkpoint=ck, dtype="float32")
        self.check_same(out)

    def test_hf_cache_folder(self):
        cache = os.path.join(self.tmp.name, "hub", "models--google--paligemma2-tiny")
        commit = "0123456789abcdef0123456789abcdef01234567"
        snap = os.path.join(cache, "snapshots", commit)
        os.makedirs(snap)
        os.makedirs(os.path.join(cache, "blobs"))
        os.makedirs(os.path.join(cache, "refs"))
        with open(os.path.join(cache, "refs", "main"), "w") as f:
            f.write(commit)
        for fn in sorted(os.listdir(H.TINY)):
            with open(os.path.join(H.TINY, fn), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            shutil.copyfile(os.path.join(H.TINY, fn), os.path.join(cache, "blobs", digest))
            os.symlink(os.path.join("..", "..", "blobs", digest), os.path.join(snap, fn))
        out = os.path.join(self.tmp.name, "from-cache")
        r = H.run_cli(cache, "--vae", H.VAE_RANDOM, "--out", out, "--dtype", "float32")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = H.read_manifest(out)
        self.assertEqual(m["source"]["model_id"], "google/paligemma2-tiny")
        self.assertEqual(m["source"]["revision"], commit)
        self.assertEqual(m["source"]["path"], cache)
        self.check_same(out)
        # A snapshot folder given directly also yields the id and revision.
        m2 = H.export_tiny(os.path.join(self.tmp.name, "from-snap"), checkpoint=snap, dtype="float32")
        self.assertEqual((m2["source"]["model_id"], m2["source"]["revision"]), ("google/paligemma2-tiny", commit))


if __name__ == "__main__":
    unittest.main()
