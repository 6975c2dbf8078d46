"""PaliGemma 2 configs in the Hub's two forms, and tiny random checkpoints that keep each variant's structure.

`python3 -m tests.exporter.variants --out DIR` writes, for every tiny variant, DIR/<name>/bundle (exported from
the checkpoint whose config.json is in the Hub's minimal form) and DIR/<name>/reference.json (pixels, prompt,
image features, last-prefix logits and greedy tokens of tests/exporter/reference.py), which
tests/unit/variant_parity_test.cc runs the C++ engine against (CTest fixture `variant_bundles`).

The "minimal form" is what save_pretrained writes (use_diff=True): only the values that differ from the class
defaults. TRANSFORMERS_DEFAULTS is this test's own copy of those defaults (transformers 4.47.0,
configuration_paligemma.py / configuration_gemma2.py / configuration_siglip.py), kept apart from the exporter's
table on purpose: the "full form" spells every one of them out, so a wrong fallback in the exporter makes the
two forms parse (and run) differently.
"""

import argparse
import copy
import json
import os
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tests.exporter import reference as R  # noqa: E402

TRANSFORMERS_DEFAULTS = {
    "paligemma": {"image_token_index": 256000, "projection_dim": 2048, "hidden_size": 2048},
    "gemma2": {"vocab_size": 256000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
               "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
               "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "attention_bias": False, "query_pre_attn_scalar": 256,
               "sliding_window": 4096, "final_logit_softcapping": 30.0, "attn_logit_softcapping": 50.0,
               "tie_word_embeddings": True},
    "siglip_vision_model": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                            "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16,
                            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6},
}

# transformers' convert_paligemma2_weights_to_hf.py VARIANT_CONFIGS (text towers) and its SigLIP So400m/14.
TEXT_TOWERS = {
    "3b": {"hidden_size": 2304, "num_hidden_layers": 26, "intermediate_size": 9216, "num_key_value_heads": 4,
           "num_attention_heads": 8, "head_dim": 256, "query_pre_attn_scalar": 256},
    "10b": {"hidden_size": 3584, "num_hidden_layers": 42, "intermediate_size": 14336, "num_key_value_heads": 8,
            "num_attention_heads": 16, "head_dim": 256, "query_pre_attn_scalar": 256},
    "28b": {"hidden_size": 4608, "num_hidden_layers": 46, "intermediate_size": 36864, "num_key_value_heads": 16,
            "num_attention_heads": 32, "head_dim": 128, "query_pre_attn_scalar": 4608 // 32},
}
SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
          "patch_size": 14}
IMAGE_SIZES = (224, 448, 896)


def minimal_config(text: dict, vision: dict, extra_top=None) -> dict:
    """A config.json as save_pretrained writes it: model types, architectures and the non-default values."""
    cfg = {"architectures": ["PaliGemmaForConditionalGeneration"], "model_type": "paligemma",
           "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "image_token_index": 257152,
           "projection_dim": text["hidden_size"], "transformers_version": "4.47.0.dev0"}
    cfg.update(extra_top or {})
    cfg["text_config"] = dict({"model_type": "gemma2", "vocab_size": 257216, "torch_dtype": "bfloat16"}, **text)
    cfg["vision_config"] = dict({"model_type": "siglip_vision_model", "torch_dtype": "bfloat16"}, **vision)
    for section, defaults in ((cfg, TRANSFORMERS_DEFAULTS["paligemma"]),
                              (cfg["text_config"], TRANSFORMERS_DEFAULTS["gemma2"]),
                              (cfg["vision_config"], TRANSFORMERS_DEFAULTS["siglip_vision_model"])):
        for k, v in defaults.items():
            if k in section and section[k] == v and type(section[k]) is type(v):
                del section[k]
    return cfg


def full_config(minimal: dict) -> dict:
    """The same config with every class default spelled out (what to_dict() gives)."""
    cfg = copy.deepcopy(minimal)
    for section, defaults in ((cfg, TRANSFORMERS_DEFAULTS["paligemma"]),
                              (cfg["text_config"], TRANSFORMERS_DEFAULTS["gemma2"]),
                              (cfg["vision_config"], TRANSFORMERS_DEFAULTS["siglip_vision_model"])):
        for k, v in defaults.items():
            section.setdefault(k, v)
    n = cfg["text_config"]["num_hidden_layers"]
    cfg["text_config"].setdefault("layer_types", ["sliding_attention" if (i + 1) % 2 else "full_attention"
                                                  for i in range(n)])
    return cfg


def hub_variant(size: str, image_size: int) -> dict:
    """PaliGemma 2 <size>-<image_size> in the minimal form (as google/paligemma2-<size>-pt-<px> has it)."""
    vision = dict(SO400M, image_size=image_size, num_image_tokens=(image_size // 14) ** 2,
                  projection_dim=TEXT_TOWERS[size]["hidden_size"], vision_use_head=False)
    text = dict(TEXT_TOWERS[size], hidden_activation="gelu_pytorch_tanh",
                num_image_tokens=(image_size // 14) ** 2)
    return minimal_config(text, vision)


# Tiny checkpoints with each variant's structure (vocab stays 257216: the fixture tokenizer's ids).
TINY_VISION = {"hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": 56, "patch_size": 14}  # 16 image tokens
TINY = {
    # 3B: heads x head_dim (8 x 256 = 2048) != hidden 2304; query_pre_attn_scalar == head_dim.
    "like-3b": {"hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16},
    # 28B: query_pre_attn_scalar = hidden / heads (144) != head_dim (128), heads x head_dim != hidden; odd layer
    # count so the last layer slides.
    "like-28b": {"hidden_size": 48, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "head_dim": 8, "query_pre_attn_scalar": 12},
    # 896 px: more image tokens (16) than the sliding window (8), so the prefix is longer than the window.
    "like-896": {"hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8},
    # Attention logits far beyond the cap (q/k weights scaled up): soft-capping changes the greedy tokens.
    "large-logits": {"hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "head_dim": 16, "query_pre_attn_scalar": 16},
}
QK_SCALE = {"large-logits": 6.0}
PROMPT = [2, 32318, 2731, 11478, 108]  # <bos> "segment" ... "\n" from the tiny golden
STEPS = 12


def tiny_config(name: str) -> dict:
    return minimal_config(dict(TINY[name]), dict(TINY_VISION))


def arch_of(name: str, softcaps=True) -> dict:
    """The reference's architecture, from the variant table and transformers' defaults (not the parser)."""
    t = dict(TRANSFORMERS_DEFAULTS["gemma2"], **TINY[name])
    return {"hidden": t["hidden_size"], "heads": t["num_attention_heads"], "kv_heads": t["num_key_value_heads"],
            "head_dim": t["head_dim"], "query_pre_attn_scalar": t["query_pre_attn_scalar"],
            "attn_softcap": t["attn_logit_softcapping"] if softcaps else None,
            "final_softcap": t["final_logit_softcapping"] if softcaps else None,
            "window": t["sliding_window"], "sliding": [(i + 1) % 2 == 1 for i in range(t["num_hidden_layers"])],
            "eps": t["rms_norm_eps"], "rope_theta": t["rope_theta"],
            "v_heads": TINY_VISION["num_attention_heads"], "v_eps": 1e-6, "patch": TINY_VISION["patch_size"]}


def write_checkpoint(name: str, folder: str, config: dict, seed: int = 0) -> dict:
    """A random checkpoint of `config` (exporter --make-random), q/k scaled for the large-logits variant,
    config.json replaced by `config` exactly as given. Returns its tensors (hub names, float32)."""
    from exporter.make_random import make_random
    from exporter.safetensors_io import SafetensorsFile, save_file
    cfg_path = os.path.join(folder + ".config.json")
    with open(cfg_path, "w") as f:
        json.dump(config, f)
    make_random(cfg_path, folder, seed=seed, force=True)
    with open(os.path.join(folder, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    tensors = {}
    for fn in files:
        st = SafetensorsFile(os.path.join(folder, fn))
        tensors.update({k: st.get(k).clone() for k in st.keys()})
        st.close()
    scale = QK_SCALE.get(name, 1.0)
    for k in tensors:
        if k.startswith("language_model.") and (".q_proj." in k or ".k_proj." in k):
            tensors[k] = (tensors[k].float() * scale).to(tensors[k].dtype)
        if k.endswith(("post_attention_layernorm.weight", "post_feedforward_layernorm.weight")):
            # Gemma's RMSNorm scales by 1 + w: layer outputs x8 outweigh the tied embedding in the residual
            # stream, else every step predicts its own input token again (tied head) and greedy tokens repeat.
            tensors[k] = torch.full_like(tensors[k], 7.0)
    if True:
        for fn in files:
            os.remove(os.path.join(folder, fn))
        os.remove(os.path.join(folder, "model.safetensors.index.json"))
        save_file(tensors, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return {k: v.float() for k, v in tensors.items()}


def read_tensors(folder: str) -> dict:
    """Every tensor of a checkpoint folder by hub name, as float32 copies."""
    from exporter.safetensors_io import SafetensorsFile
    out = {}
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            st = SafetensorsFile(os.path.join(folder, fn))
            out.update({k: st.get(k).float().clone() for k in st.keys()})
            st.close()
    return out


def pixels(seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    s = TINY_VISION["image_size"]
    return torch.rand(3, s, s, generator=g) * 2 - 1


def build(name: str, root: str, vae: str) -> dict:
    """Checkpoint (minimal-form config) + bundle + reference.json under root/name; returns the reference."""
    from exporter.export import export
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    tensors = write_checkpoint(name, os.path.join(d, "checkpoint"), tiny_config(name))
    export(os.path.join(d, "checkpoint"), vae, os.path.join(d, "bundle"), dtype="float32", force=True)
    arch = arch_of(name)
    px = pixels()
    with torch.no_grad():
        feats = R.vision_features(tensors, arch, px)
        toks, last = R.greedy(tensors, arch, feats, PROMPT, STEPS)
    ref = {"name": name, "pixel_values": px.flatten().tolist(), "prompt": PROMPT,
           "image_features": feats.flatten().tolist(), "image_features_shape": list(feats.shape),
           "last_prefix_logits_top": last.topk(20).indices.tolist(),
           "last_prefix_logits_top_values": last.topk(20).values.tolist(),
           "last_prefix_logits_stride997": last[::997].tolist(), "greedy_tokens": toks}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f)
    return ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--vae", default=os.path.join(REPO, "tests", "fixtures", "vae", "vae-oid-random.npz"))
    args = ap.parse_args()
    for name in TINY:
        t0 = time.time()
        ref = build(name, args.out, args.vae)
        print(f"{name}: exported, reference tokens {ref['greedy_tokens']} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
    main()
