"""Every bad input: non-zero exit, one specific line on stderr, no traceback, no bundle or temp dir left."""

import json
import os
import shutil
import struct
import tempfile
import unittest

import numpy as np
import torch

from tests.exporter import helpers as H

UP = "language_model.model.layers.1.mlp.up_proj.weight"


class Errors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = cls.tmp.name

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def fail_with(self, args, *needles, out=None):
        out = out or os.path.join(self.root, "outs", self.id().rsplit(".", 1)[-1], "bundle")
        parent = os.path.dirname(out)
        if not os.path.exists(parent):
            os.makedirs(parent)
        before = sorted(os.listdir(parent)) if os.path.isdir(parent) else None
        r = H.run_cli(*args, "--out", out)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertTrue(lines[0].startswith("exporter: error: "), lines[0])
        self.assertNotIn("Traceback", r.stderr)
        for n in needles:
            self.assertIn(n, lines[0])
        if before is not None:
            self.assertEqual(sorted(os.listdir(parent)), before, "bundle or temp dir left behind")
        return lines[0]

    def variant(self, name, **kw):
        p = os.path.join(self.root, name)
        if not os.path.isdir(p):
            H.make_variant(p, link_small=True, **kw)
        return p

    def vae_variant(self, name, edit):
        with np.load(H.VAE_RANDOM) as z:
            arrays = {k: z[k] for k in z.files}
        edit(arrays)
        p = os.path.join(self.root, name + ".npz")
        np.savez(p, **arrays)
        return p

    def test_missing_checkpoint_dir(self):
        self.fail_with([os.path.join(self.root, "nope"), "--vae", H.VAE_RANDOM], "does not exist", "nope")

    def test_missing_config(self):
        d = os.path.join(self.root, "empty")
        os.makedirs(d, exist_ok=True)
        self.fail_with([d, "--vae", H.VAE_RANDOM], "config.json")

    def test_missing_tokenizer(self):
        d = os.path.join(self.root, "notok")
        H.make_variant(d)
        os.remove(os.path.join(d, "tokenizer.json"))
        self.fail_with([d, "--vae", H.VAE_RANDOM], "tokenizer.json")

    def test_missing_weights(self):
        d = os.path.join(self.root, "noweights")
        os.makedirs(d, exist_ok=True)
        for fn in H.SMALL_FILES:
            shutil.copyfile(os.path.join(H.TINY, fn), os.path.join(d, fn))
        self.fail_with([d, "--vae", H.VAE_RANDOM], "model.safetensors")

    def test_not_paligemma(self):
        d = self.variant("llava", config_edit=lambda c: c.update(model_type="llava"))
        self.fail_with([d, "--vae", H.VAE_RANDOM], "model_type", "llava")

    def test_not_gemma2(self):
        d = self.variant("pg1", config_edit=lambda c: c["text_config"].update(model_type="gemma"))
        self.fail_with([d, "--vae", H.VAE_RANDOM], "gemma2", "PaliGemma 1", "only PaliGemma 2 is supported")

    def test_missing_tensor(self):
        d = self.variant("missing", drop=[UP])
        self.fail_with([d, "--vae", H.VAE_RANDOM], f"missing tensor {UP}")

    def test_misshapen_tensor(self):
        d = self.variant("misshapen", replace={UP: torch.zeros(96, 33, dtype=torch.bfloat16)})
        line = self.fail_with([d, "--vae", H.VAE_RANDOM])
        self.assertEqual(line, f"exporter: error: tensor {UP} has shape [96, 33], expected [96, 32]")

    def test_unknown_dtype_option(self):
        self.fail_with([H.TINY, "--vae", H.VAE_RANDOM, "--dtype", "float8"], "unknown dtype", "float8")

    def test_unknown_tensor_dtype(self):
        d = os.path.join(self.root, "f8")
        H.make_variant(d)
        # Rewrite the file's header so one tensor claims a dtype the exporter cannot read.
        p = os.path.join(d, "model.safetensors")
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        e = header["multi_modal_projector.linear.bias"]
        e["dtype"], e["shape"] = "F8_E4M3", [e["shape"][0] * 2]
        hb = json.dumps(header).encode()
        with open(p, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + data)
        self.fail_with([d, "--vae", H.VAE_RANDOM], "multi_modal_projector.linear.bias", "F8_E4M3")

    def test_vae_missing_keys(self):
        p = self.vae_variant("vae-missing", lambda a: (a.pop("decoder.12.weight"), a.pop("_vq_vae._embedding")))
        self.fail_with([H.TINY, "--vae", p], "decoder.12.weight", "_vq_vae._embedding")

    def test_vae_wrong_shape(self):
        p = self.vae_variant("vae-shape", lambda a: a.update({"decoder.6.weight": np.zeros((128, 64, 3, 3), np.float32)}))
        self.fail_with([H.TINY, "--vae", p], "decoder.6.weight has shape [128, 64, 3, 3], expected [128, 64, 4, 4]")

    def test_vae_missing_file(self):
        self.fail_with([H.TINY, "--vae", os.path.join(self.root, "none.npz")], "none.npz")

    def test_vae_not_npz(self):
        self.fail_with([H.TINY, "--vae", os.path.join(H.TINY, "config.json")], "npz")

    def test_output_not_writable(self):
        blocker = os.path.join(self.root, "a-file")
        with open(blocker, "w") as f:
            f.write("x")
        self.fail_with([H.TINY, "--vae", H.VAE_RANDOM], "not writable", out=os.path.join(blocker, "bundle"))
        if os.geteuid() != 0:  # root ignores directory permissions
            ro = os.path.join(self.root, "readonly")
            os.makedirs(ro, exist_ok=True)
            os.chmod(ro, 0o555)
            try:
                self.fail_with([H.TINY, "--vae", H.VAE_RANDOM], "not writable", out=os.path.join(ro, "bundle"))
            finally:
                os.chmod(ro, 0o755)

    def test_existing_bundle_needs_force(self):
        out = os.path.join(self.root, "existing", "bundle")
        os.makedirs(out)
        with open(os.path.join(out, "keep.txt"), "w") as f:
            f.write("old")
        self.fail_with([H.TINY, "--vae", H.VAE_RANDOM], "--force", out=out)
        self.assertEqual(os.listdir(out), ["keep.txt"])


if __name__ == "__main__":
    unittest.main()
