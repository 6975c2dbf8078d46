"""config.json in the Hub's minimal form for every PaliGemma 2 variant (3B / 10B / 28B at 224 / 448 / 896 px)
parses to the same architecture as the form that spells every default out, with the shapes of transformers'
convert_paligemma2_weights_to_hf.py; PaliGemma 1 and other models are refused; where config and weights
disagree the message names both."""

import json
import os
import tempfile
import unittest

from tests.exporter import helpers as H
from tests.exporter import variants as V
from exporter.checkpoint import parse_config
from exporter.errors import ExportError

# What each variant must parse to (transformers' conversion script; tokens = (px / 14)^2).
EXPECTED_TEXT = {
    "3b": dict(hidden_size=2304, num_layers=26, intermediate_size=9216, num_heads=8, num_kv_heads=4, head_dim=256,
               query_pre_attn_scalar=256.0),
    "10b": dict(hidden_size=3584, num_layers=42, intermediate_size=14336, num_heads=16, num_kv_heads=8,
                head_dim=256, query_pre_attn_scalar=256.0),
    "28b": dict(hidden_size=4608, num_layers=46, intermediate_size=36864, num_heads=32, num_kv_heads=16,
                head_dim=128, query_pre_attn_scalar=144.0),
}


class HubConfigs(unittest.TestCase):
    def test_every_variant_minimal_equals_full(self):
        for size in EXPECTED_TEXT:
            for px in V.IMAGE_SIZES:
                with self.subTest(f"{size}-{px}"):
                    minimal = V.hub_variant(size, px)
                    pre = {"size": {"height": px, "width": px}, "image_seq_length": (px // 14) ** 2}
                    text, vision = parse_config(minimal, pre)
                    self.assertEqual((text, vision), parse_config(V.full_config(minimal), pre))
                    for k, v in EXPECTED_TEXT[size].items():
                        self.assertEqual(getattr(text, k), v, k)
                    self.assertEqual(text.vocab_size, 257216)
                    self.assertEqual((text.attn_softcap, text.final_softcap), (50.0, 30.0))
                    self.assertEqual(text.sliding_window, 4096)
                    self.assertEqual(text.rope_theta, 10000.0)
                    self.assertEqual(text.sliding, [i % 2 == 0 for i in range(text.num_layers)])
                    self.assertEqual((vision.hidden_size, vision.intermediate_size, vision.num_layers,
                                      vision.num_heads, vision.patch_size, vision.image_size),
                                     (1152, 4304, 27, 16, 14, px))
                    self.assertEqual(vision.num_image_tokens, {224: 256, 448: 1024, 896: 4096}[px])
                    # The minimal form really omits what the exporter used to get wrong.
                    self.assertNotIn("attn_logit_softcapping", minimal["text_config"])
                    self.assertNotIn("final_logit_softcapping", minimal["text_config"])
                    if size != "28b":
                        self.assertNotIn("head_dim", minimal["text_config"])
                        self.assertNotIn("query_pre_attn_scalar", minimal["text_config"])

    def test_tiny_fixture_without_each_default(self):
        # The fixture spells every field out; leaving out any key at its class default parses the same.
        with open(os.path.join(H.TINY, "config.json")) as f:
            full = json.load(f)
        want = parse_config(full)
        dropped = []
        for section, cls in (("text_config", "gemma2"), ("vision_config", "siglip_vision_model")):
            defaults = V.TRANSFORMERS_DEFAULTS[cls]
            for key in [k for k in full[section] if k in defaults and full[section][k] == defaults[k]]:
                cfg = json.loads(json.dumps(full))
                del cfg[section][key]
                self.assertEqual(parse_config(cfg), want, f"{section}.{key}")
                dropped.append(key)
        self.assertIn("attn_logit_softcapping", dropped)
        self.assertIn("final_logit_softcapping", dropped)
        self.assertIn("sliding_window", dropped)

    def test_896_prefix_is_longer_than_the_window(self):
        text, vision = parse_config(V.hub_variant("3b", 896))
        self.assertGreater(vision.num_image_tokens + 2, text.sliding_window)

    def test_shared_3b_448_fixture_config(self):
        # The benchmarks' full-form config (tests/fixtures, from ../shared) reads as the minimal form does.
        with open(os.path.join(H.FIXTURES, "paligemma2-3b-448.config.json")) as f:
            self.assertEqual(parse_config(json.load(f)), parse_config(V.hub_variant("3b", 448)))

    def test_null_softcaps_are_off_and_zero_is_refused(self):
        cfg = V.hub_variant("3b", 224)
        cfg["text_config"].update(attn_logit_softcapping=None, final_logit_softcapping=None)
        text, _ = parse_config(cfg)
        self.assertEqual((text.attn_softcap, text.final_softcap), (0.0, 0.0))
        cfg["text_config"]["attn_logit_softcapping"] = 0
        with self.assertRaisesRegex(ExportError, "attn_logit_softcapping = 0 must be positive"):
            parse_config(cfg)

    def test_layer_types_and_rope_parameters_of_transformers_5(self):
        cfg = V.hub_variant("3b", 224)
        cfg["text_config"].update(layer_types=["full_attention"] * 26, rope_parameters={"rope_theta": 20000.0,
                                                                                        "rope_type": "default"})
        text, _ = parse_config(cfg)
        self.assertEqual(text.sliding, [False] * 26)
        self.assertEqual(text.rope_theta, 20000.0)

    def test_absent_vision_config_is_paligemma_override(self):
        cfg = V.hub_variant("3b", 224)
        del cfg["vision_config"]
        _, vision = parse_config(cfg)
        self.assertEqual((vision.hidden_size, vision.intermediate_size, vision.num_layers, vision.num_heads,
                          vision.patch_size, vision.image_size), (1152, 4096, 27, 16, 14, 224))

    def test_vision_defaults_are_siglip_not_preprocessor(self):
        cfg = V.hub_variant("3b", 448)
        del cfg["vision_config"]["image_size"]  # SiglipVisionConfig default 224, whatever the preprocessor says
        self.assertEqual(parse_config(cfg)[1].image_size, 224)
        with self.assertRaisesRegex(ExportError, r"size 448 differs from vision_config.image_size \(absent"):
            parse_config(cfg, {"size": {"height": 448, "width": 448}})

    def test_projection_dim_default_must_match_text_width(self):
        cfg = V.hub_variant("3b", 224)
        del cfg["projection_dim"]
        with self.assertRaisesRegex(ExportError, "projection_dim.*2048.*differs from text_config.hidden_size.*2304"):
            parse_config(cfg)

    def test_paligemma_1_is_refused(self):
        cases = {
            "gemma": lambda c: c["text_config"].update(model_type="gemma"),
            "no model_type": lambda c: c["text_config"].pop("model_type"),
            "no text_config": lambda c: c.pop("text_config"),
        }
        for what, edit in cases.items():
            with self.subTest(what):
                cfg = V.hub_variant("3b", 224)
                edit(cfg)
                with self.assertRaisesRegex(ExportError, "PaliGemma 1"):
                    parse_config(cfg)


class WeightsDisagree(unittest.TestCase):
    """The tiny checkpoint with config keys removed: transformers would read the defaults and fail to load the
    weights; the exporter names the config field, its default and the tensor's size."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def fails(self, name, edit, *needles):
        d = os.path.join(self.tmp.name, name)
        H.make_variant(d, link_small=True, config_edit=edit)
        r = H.run_cli(d, "--vae", H.VAE_RANDOM, "--out", os.path.join(self.tmp.name, name + "-out"))
        self.assertNotEqual(r.returncode, 0)
        line = r.stderr.strip()
        self.assertEqual(len(line.splitlines()), 1, line)
        for n in needles:
            self.assertIn(n, line)
        return line

    def test_vocab(self):
        self.fails("vocab", lambda c: c["text_config"].pop("vocab_size"), "text_config.vocab_size is 256000",
                   "embed_tokens.weight has 257216")

    def test_head_dim(self):
        self.fails("head_dim", lambda c: c["text_config"].pop("head_dim"), "4 x 256", "q_proj.weight has 64")

    def test_layer_count(self):
        self.fails("layers", lambda c: c["text_config"].update(num_hidden_layers=1),
                   "num_hidden_layers is 1", "hold 2 language layers")

    def test_image_tokens(self):
        def edit(c):
            c["vision_config"]["image_size"] = 28
        d = os.path.join(self.tmp.name, "tokens")
        H.make_variant(d, config_edit=edit)
        with open(os.path.join(d, "preprocessor_config.json")) as f:
            pre = json.load(f)
        pre.update(size={"height": 28, "width": 28}, image_seq_length=4)
        with open(os.path.join(d, "preprocessor_config.json"), "w") as f:
            json.dump(pre, f)
        r = H.run_cli(d, "--vae", H.VAE_RANDOM, "--out", os.path.join(self.tmp.name, "tokens-out"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("number of image tokens", r.stderr)
        self.assertIn("position_embedding.weight has 16", r.stderr)

    def test_image_token_index(self):
        self.fails("imgtok", lambda c: c.pop("image_token_index"), "image_token_index 256000 (absent",
                   "<image> id 257152")


if __name__ == "__main__":
    unittest.main()
