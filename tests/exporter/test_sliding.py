"""Sliding-window layers with a window shorter than the prefix (as 896-px models: 4096 image tokens).

Rule (transformers 5.x, masking_utils + PaliGemma's or_mask_function over the prefix): q may attend to kv iff
kv is not padding and ((kv <= q and (full layer or q - kv < window)) or (q and kv both in the prefix)).
The cached prefill + decode of the exported module must equal a straightforward full-sequence computation.
"""

import os
import tempfile
import unittest

import torch
import torch.nn.functional as F

from tests.exporter import helpers as H
from exporter.bundle import load_module

WINDOW = 8


def rms(x, w, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w.float())).type_as(x)


def reference_logits(sd, cfg, feats, ids, prefix_len, window, sliding):
    """Full-sequence Gemma 2 (no cache) for one row: feats [N,H], ids [T] (prompt then generated tokens),
    the first prefix_len positions form the bidirectional prefix. Returns soft-capped logits [S,V]."""
    t = cfg["text"]
    hid, nh, kvh, d = t["hidden_size"], t["num_heads"], t["num_kv_heads"], t["head_dim"]
    emb = sd["embed_tokens"]
    x = torch.cat([feats / hid ** 0.5, emb[ids]], 0) * torch.tensor(hid ** 0.5)
    s = x.shape[0]
    pos = torch.arange(s)
    inv = 1.0 / (10000.0 ** (torch.arange(0, d, 2).float() / d))
    ang = pos.float()[:, None] * inv[None]
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(z):  # z [heads,S,D]
        rot = torch.cat([-z[..., d // 2:], z[..., :d // 2]], -1)
        return z * cos + rot * sin

    q_i, k_i = pos[:, None], pos[None, :]
    in_prefix = (q_i < prefix_len) & (k_i < prefix_len)
    for i in range(t["num_layers"]):
        p = lambda n: sd[f"layers.{i}.{n}"]
        causal = k_i <= q_i
        if sliding[i]:
            causal = causal & (q_i - k_i < window)
        allowed = causal | in_prefix
        h = rms(x, p("input_layernorm.weight"))
        q = rope((h @ p("self_attn.q_proj.weight").T).view(s, nh, d).transpose(0, 1))
        k = rope((h @ p("self_attn.k_proj.weight").T).view(s, kvh, d).transpose(0, 1))
        v = (h @ p("self_attn.v_proj.weight").T).view(s, kvh, d).transpose(0, 1)
        k = k.repeat_interleave(nh // kvh, 0)
        v = v.repeat_interleave(nh // kvh, 0)
        sc = q @ k.transpose(1, 2) * 16 ** -0.5  # query_pre_attn_scalar 16
        sc = torch.tanh(sc / 50.0) * 50.0
        sc = sc.masked_fill(~allowed, float("-inf")).softmax(-1)
        a = (sc @ v).transpose(0, 1).reshape(s, nh * d) @ p("self_attn.o_proj.weight").T
        x = x + rms(a, p("post_attention_layernorm.weight"))
        h = rms(x, p("pre_feedforward_layernorm.weight"))
        m = (F.gelu(h @ p("mlp.gate_proj.weight").T, approximate="tanh") * (h @ p("mlp.up_proj.weight").T))
        x = x + rms(m @ p("mlp.down_proj.weight").T, p("post_feedforward_layernorm.weight"))
    x = rms(x, sd["norm.weight"])
    return torch.tanh((x @ emb.T) / 30.0) * 30.0


class SlidingWindow(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        ck = H.make_variant(os.path.join(cls.tmp.name, "ckpt"), sharded=True, link_small=True,
                            config_edit=lambda c: c["text_config"].update(sliding_window=WINDOW))
        cls.bundle = os.path.join(cls.tmp.name, "bundle")
        H.export_tiny(cls.bundle, checkpoint=ck, dtype="float32")
        cls.manifest = H.read_manifest(cls.bundle)
        cls.vis, cls.lang, _ = H.load_bundle(cls.bundle)
        cls.sd = {k: v for k, v in cls.lang.state_dict().items()}
        cls.g = H.golden()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_manifest_window(self):
        self.assertEqual(self.manifest["text"]["sliding_window"], WINDOW)

    def test_cached_equals_full_sequence(self):
        gen = torch.Generator().manual_seed(1)
        pix = torch.cat([torch.tensor(self.g["pixel_values"]).view(1, 3, 56, 56),
                         torch.rand(1, 3, 56, 56, generator=gen) * 2 - 1])
        prompts = [self.g["input_ids"][16:], [2, 500, 600, 108]]
        T = max(len(p) for p in prompts)
        ids = torch.tensor([p + [0] * (T - len(p)) for p in prompts])
        lengths = torch.tensor([len(p) for p in prompts])
        slots = torch.tensor([1, 3])
        steps = 12  # decode reaches positions well past prefix + window
        sliding = [(i + 1) % 2 == 1 for i in range(self.manifest["text"]["num_layers"])]
        with torch.no_grad():
            feats = self.vis(pix)
            n = feats.shape[1]
            kc, vc = H.new_cache(self.manifest, 4, 64, fill=float("nan"))
            h = self.lang.prefill(feats, self.lang.embed(ids), lengths, slots, kc, vc)
            logits = [self.lang.logits(h[torch.arange(2), n + lengths - 1])]
            pos = n + lengths
            toks = []
            for step in range(steps):
                t = logits[-1].argmax(-1)
                toks.append(t)
                logits.append(self.lang.decode(t, pos, slots, kc, vc))
                pos = pos + 1
            worst = 0.0
            for b in range(2):
                full_ids = torch.tensor(prompts[b] + [int(t[b]) for t in toks])
                P = n + len(prompts[b])
                ref = reference_logits(self.sd, self.manifest, feats[b], full_ids, P, WINDOW, sliding)
                no_window = reference_logits(self.sd, self.manifest, feats[b], full_ids, P, 10 ** 9, sliding)
                # The prefix is bidirectional whatever the window: the prefill logits do not depend on it.
                self.assertLessEqual((ref[P - 1] - no_window[P - 1]).abs().max().item(), 1e-5)
                # ...but generated tokens beyond the window do (so this test has teeth).
                self.assertGreater((ref[P + steps - 1] - no_window[P + steps - 1]).abs().max().item(), 1e-3)
                for step in range(steps + 1):
                    err = (logits[step][b] - ref[P - 1 + step]).abs().max().item()
                    worst = max(worst, err)
                    self.assertLessEqual(err, 1e-4, f"row {b} step {step}")
        print(f"\n  sliding window {WINDOW}: cached vs full-sequence max abs {worst:.2e}")

    def test_layer_types_from_config(self):
        # config layer_types (transformers 5) overrides the even/odd default; here: all layers full attention.
        with tempfile.TemporaryDirectory() as tmp:
            ck = H.make_variant(os.path.join(tmp, "ckpt"), link_small=True, config_edit=lambda c: c["text_config"].update(
                sliding_window=WINDOW, layer_types=["full_attention", "full_attention"]))
            out = os.path.join(tmp, "b")
            H.export_tiny(out, checkpoint=ck, dtype="float32")
            lang = load_module(out, "language")
            flags = lambda m: [bool(getattr(m.layers, str(i)).sliding) for i in range(2)]
            self.assertEqual(flags(lang), [False, False])
            self.assertEqual(flags(self.lang), [True, False])  # default: even layers slide


if __name__ == "__main__":
    unittest.main()
