"""Tiny random checkpoints with each PaliGemma 2 variant's structure (tests/exporter/variants.py), exported from
configs in the Hub's minimal form: the exported modules agree with the independent reference
(tests/exporter/reference.py), and the minimal form runs exactly as the form that spells every default out."""

import copy
import json
import os
import shutil
import tempfile
import time
import unittest

import torch

from tests.exporter import helpers as H
from tests.exporter import reference as R
from tests.exporter import variants as V
from exporter.checkpoint import parse_config

EOS = 1


def run_bundle(path, pixels, prompt, steps):
    """Image features, last-prefix logits, greedy tokens (eos suppressed) and every step's logits of a bundle."""
    vis, lang, _ = H.load_bundle(path)
    m = H.read_manifest(path)
    with torch.no_grad():
        feats = vis(pixels[None])
        ids = torch.tensor([prompt])
        kc, vc = H.new_cache(m, 1, 64)
        h = lang.prefill(feats, lang.embed(ids), torch.tensor([len(prompt)]), torch.tensor([0]), kc, vc)
        logits = lang.logits(h[:, -1])[0]
        pos = feats.shape[1] + len(prompt)
        toks, all_logits = [], [logits]
        for i in range(steps):
            masked = logits.clone()
            masked[EOS] = -float("inf")
            toks.append(int(masked.argmax()))
            if i + 1 == steps:
                break
            logits = lang.decode(torch.tensor([toks[-1]]), torch.tensor([pos]), torch.tensor([0]), kc, vc)[0]
            all_logits.append(logits)
            pos += 1
    return feats[0], all_logits[0], toks, torch.stack(all_logits)


class TinyVariants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        t0 = time.time()
        cls.tmp = tempfile.TemporaryDirectory()
        cls.root = cls.tmp.name
        cls.refs = {name: V.build(name, cls.root, H.VAE_RANDOM) for name in V.TINY}
        cls.tensors = {}
        for name in V.TINY:
            ck = os.path.join(cls.root, name, "checkpoint")
            cls.tensors[name] = V.read_tensors(ck)
            shutil.copytree(ck, ck + "-again")
            full = V.full_config(V.tiny_config(name))
            with open(os.path.join(ck + "-again", "config.json"), "w") as f:
                json.dump(full, f)
            H.export_tiny(os.path.join(cls.root, name, "bundle-full"), checkpoint=ck + "-again", dtype="float32")
        cls.px = V.pixels()
        print(f"\n  built {len(V.TINY)} variants x 2 config forms in {time.time() - t0:.1f} s")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def bundle(self, name, form="bundle"):
        return os.path.join(self.root, name, form)

    def test_minimal_form_omits_the_defaults(self):
        # The test has teeth only if the minimal configs really leave the defaulted keys out.
        for name in V.TINY:
            tc = V.tiny_config(name)["text_config"]
            for key in ("attn_logit_softcapping", "final_logit_softcapping", "rms_norm_eps", "rope_theta",
                        "hidden_activation", "max_position_embeddings", "layer_types"):
                self.assertNotIn(key, tc, name)
            self.assertEqual("sliding_window" in tc, name == "like-896")

    def test_exported_modules_match_reference(self):
        for name, ref in self.refs.items():
            with self.subTest(name):
                feats, last, toks, _ = run_bundle(self.bundle(name), self.px, V.PROMPT, V.STEPS)
                err_f = (feats.flatten() - torch.tensor(ref["image_features"])).abs().max().item()
                top = ref["last_prefix_logits_top"]
                err_l = (last[top] - torch.tensor(ref["last_prefix_logits_top_values"])).abs().max().item()
                err_s = (last[::997] - torch.tensor(ref["last_prefix_logits_stride997"])).abs().max().item()
                print(f"\n  {name}: features {err_f:.1e}, last-prefix logits {max(err_l, err_s):.1e}, tokens {toks}")
                self.assertLessEqual(err_f, 1e-4)
                self.assertLessEqual(max(err_l, err_s), 1e-4)
                self.assertEqual(toks, ref["greedy_tokens"])
                self.assertGreater(len(set(toks)), 1, "degenerate reference: every token the same")

    def test_minimal_form_runs_as_full_form(self):
        for name in V.TINY:
            with self.subTest(name):
                a, b = H.read_manifest(self.bundle(name)), H.read_manifest(self.bundle(name, "bundle-full"))
                for m in (a, b):
                    m.pop("files"), m.pop("source")
                self.assertEqual(a, b)
                _, _, ta, la = run_bundle(self.bundle(name), self.px, V.PROMPT, V.STEPS)
                _, _, tb, lb = run_bundle(self.bundle(name, "bundle-full"), self.px, V.PROMPT, V.STEPS)
                self.assertEqual(ta, tb)
                self.assertTrue(torch.equal(la, lb), f"{name}: logits differ by {(la - lb).abs().max().item()}")

    def test_each_defaulted_key_alone(self):
        # Dropping any one spelled-out default (or the derived layer_types) from the full form parses to the
        # same architecture.
        classes = {"": "paligemma", "text_config": "gemma2", "vision_config": "siglip_vision_model"}
        for name in V.TINY:
            full = V.full_config(V.tiny_config(name))
            want = parse_config(full)
            for section, cls in classes.items():
                defaults = V.TRANSFORMERS_DEFAULTS[cls]
                target = full[section] if section else full
                omittable = [k for k in target if (k in defaults and target[k] == defaults[k]) or k == "layer_types"]
                self.assertGreaterEqual(len(omittable), 1 if section == "" else 3, f"{name} {section}")
                for key in omittable:
                    cfg = copy.deepcopy(full)
                    del (cfg[section] if section else cfg)[key]
                    self.assertEqual(parse_config(cfg), want, f"{name}: omitting {section}.{key}")

    def test_softcap_changes_tokens_and_null_turns_it_off(self):
        name = "large-logits"
        t = self.tensors[name]
        with torch.no_grad():
            feats = R.vision_features(t, V.arch_of(name), self.px)
            capped, _ = R.greedy(t, V.arch_of(name), feats, V.PROMPT, V.STEPS)
            uncapped, _ = R.greedy(t, V.arch_of(name, softcaps=False), feats, V.PROMPT, V.STEPS)
        same = sum(x == y for x, y in zip(capped, uncapped))
        print(f"\n  large attention logits: {same} of {V.STEPS} tokens equal with and without the soft-caps")
        self.assertLessEqual(same, V.STEPS // 2)  # the caps matter here, so a 0.0 (off) fallback would fail
        self.assertEqual(capped, self.refs[name]["greedy_tokens"])
        # Written as null (transformers' None), both caps are off.
        cfg = V.tiny_config(name)
        cfg["text_config"].update(attn_logit_softcapping=None, final_logit_softcapping=None)
        ck = os.path.join(self.root, "nocap-checkpoint")
        shutil.copytree(os.path.join(self.root, name, "checkpoint"), ck)
        with open(os.path.join(ck, "config.json"), "w") as f:
            json.dump(cfg, f)
        out = os.path.join(self.root, "nocap-bundle")
        H.export_tiny(out, checkpoint=ck, dtype="float32")
        _, _, toks, _ = run_bundle(out, self.px, V.PROMPT, V.STEPS)
        self.assertEqual(toks, uncapped)

    def test_prefix_longer_than_window(self):
        # 896 px: 4096 image tokens + prompt > sliding_window 4096. Here 16 image tokens + 5 > window 8.
        name = "like-896"
        t, arch = self.tensors[name], V.arch_of(name)
        prefix = V.TINY_VISION["image_size"] ** 2 // V.TINY_VISION["patch_size"] ** 2 + len(V.PROMPT)
        self.assertGreater(prefix, arch["window"])
        toks = self.refs[name]["greedy_tokens"]
        with torch.no_grad():
            feats = R.vision_features(t, arch, self.px)
            ids = torch.tensor(V.PROMPT + toks)
            ref = R.text_logits(t, arch, feats, ids, prefix)
            old = R.text_logits(t, arch, feats, ids, prefix, mask=R.mask_4_47)
            wide = R.text_logits(t, dict(arch, window=10 ** 6), feats, ids, prefix)
        _, _, _, got = run_bundle(self.bundle(name), self.px, V.PROMPT, V.STEPS)
        err = (got - ref[prefix - 1:prefix - 1 + V.STEPS]).abs().max().item()
        print(f"\n  prefix {prefix} > window {arch['window']}: exported vs masking_utils reference {err:.1e}, "
              f"vs the transformers 4.47 rule {(got[0] - old[prefix - 1]).abs().max().item():.2f}")
        self.assertLessEqual(err, 1e-4)
        # The prefill sees the whole prefix in every layer: its logits do not depend on the window...
        self.assertLessEqual((ref[prefix - 1] - wide[prefix - 1]).abs().max().item(), 1e-5)
        # ...generated tokens beyond the window do, and the 4.47 rule (window applied inside the prefix too)
        # gives other prefill logits, so this case tells the rules apart.
        self.assertGreater((ref[-1] - wide[-1]).abs().max().item(), 1e-3)
        self.assertGreater((ref[prefix - 1] - old[prefix - 1]).abs().max().item(), 1e-3)


if __name__ == "__main__":
    unittest.main()
