"""`python3 -m exporter --make-random CONFIG_JSON --out DIR`: a Hugging Face-layout PaliGemma 2 checkpoint
with random weights of CONFIG_JSON's architecture (sharded bf16 safetensors + index with the hub's old-style
names, config.json, tokenizer.json, tokenizer_config.json and preprocessor_config.json from the tiny fixture,
adjusted for the image size), so benchmarks and transformers comparisons need no real weights.

Initialisation is scaled-normal (std 1/sqrt(fan_in) for projections, 1/sqrt(hidden) for the tied embedding,
RMSNorm weights 0 = scale 1, LayerNorm 1/0): activations stay O(1) through every layer, so logits are finite
and greedy decoding behaves like a real model's (no NaN, no early <eos> collapse is guaranteed though).
Tensors are generated and written one at a time in row chunks, so peak memory is one shard's largest tensor,
not the checkpoint."""

import json
import os
import shutil
from typing import Dict, List, Tuple

from .errors import ExportError

_FIXTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "fixtures",
                        "paligemma2-tiny")


def tensor_specs(cfg: dict) -> List[Tuple[str, Tuple[int, ...], str]]:
    """(hub name, shape, init kind) of every tensor of a PaliGemma 2 checkpoint with config `cfg`.
    init kind: 'w' (normal, std 1/sqrt(fan_in)), 'emb' (normal, std 1/sqrt(last dim)), 'zero', 'one', 'pos'."""
    from .checkpoint import parse_config
    # The architecture as the exporter (and transformers) reads it: absent keys take the class defaults
    # (e.g. head_dim 256, not hidden_size // num_attention_heads).
    text, vision = parse_config(cfg)
    hv, iv, p = vision.hidden_size, vision.intermediate_size, vision.patch_size
    ch = vision.num_channels
    n_patches = vision.num_image_tokens
    ht, it = text.hidden_size, text.intermediate_size
    nh, kvh = text.num_heads, text.num_kv_heads
    d = text.head_dim
    specs = []
    vp = "vision_tower.vision_model."
    specs += [(vp + "embeddings.patch_embedding.weight", (hv, ch, p, p), "w"),
              (vp + "embeddings.patch_embedding.bias", (hv,), "zero"),
              (vp + "embeddings.position_embedding.weight", (n_patches, hv), "pos")]
    for i in range(vision.num_layers):
        lp = f"{vp}encoder.layers.{i}."
        for norm in ("layer_norm1", "layer_norm2"):
            specs += [(lp + norm + ".weight", (hv,), "one"), (lp + norm + ".bias", (hv,), "zero")]
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            specs += [(lp + f"self_attn.{proj}.weight", (hv, hv), "w"), (lp + f"self_attn.{proj}.bias", (hv,), "zero")]
        specs += [(lp + "mlp.fc1.weight", (iv, hv), "w"), (lp + "mlp.fc1.bias", (iv,), "zero"),
                  (lp + "mlp.fc2.weight", (hv, iv), "w"), (lp + "mlp.fc2.bias", (hv,), "zero")]
    specs += [(vp + "post_layernorm.weight", (hv,), "one"), (vp + "post_layernorm.bias", (hv,), "zero"),
              ("multi_modal_projector.linear.weight", (ht, hv), "w"),
              ("multi_modal_projector.linear.bias", (ht,), "zero")]
    lp0 = "language_model.model."
    specs.append((lp0 + "embed_tokens.weight", (text.vocab_size, ht), "emb"))
    for i in range(text.num_layers):
        lp = f"{lp0}layers.{i}."
        for norm in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            specs.append((lp + norm + ".weight", (ht,), "zero"))
        specs += [(lp + "self_attn.q_proj.weight", (nh * d, ht), "w"),
                  (lp + "self_attn.k_proj.weight", (kvh * d, ht), "w"),
                  (lp + "self_attn.v_proj.weight", (kvh * d, ht), "w"),
                  (lp + "self_attn.o_proj.weight", (ht, nh * d), "w"),
                  (lp + "mlp.gate_proj.weight", (it, ht), "w"),
                  (lp + "mlp.up_proj.weight", (it, ht), "w"),
                  (lp + "mlp.down_proj.weight", (ht, it), "w")]
    specs.append((lp0 + "norm.weight", (ht,), "zero"))
    return specs


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _fill(shape, kind, gen):
    import torch
    out = torch.empty(shape, dtype=torch.bfloat16)
    if kind == "zero":
        return out.zero_()
    if kind == "one":
        return out.fill_(1.0)
    std = {"w": (_numel(shape[1:]) or 1) ** -0.5, "emb": shape[-1] ** -0.5, "pos": 0.02}[kind]
    rows = out.view(shape[0], -1)
    step = max(1, (1 << 24) // max(1, rows.shape[1]))  # ~64 MB of fp32 at a time
    for r in range(0, rows.shape[0], step):
        chunk = rows[r:r + step]
        chunk.copy_(torch.randn(chunk.shape, generator=gen) * std)
    return out


def _write_shard(path: str, names: List[Tuple[str, Tuple[int, ...], str]], gen):
    import torch
    from .safetensors_io import write_streaming
    kinds = {name: (shape, kind) for name, shape, kind in names}
    write_streaming([(name, torch.bfloat16, shape) for name, shape, _ in names], path,
                    lambda name: _fill(*kinds[name], gen), align=8, metadata={"format": "pt"})


def make_random(config_path: str, out: str, seed: int = 0, shard_bytes: int = 2 << 30, image_size: int = 0,
                force: bool = False, log=None) -> Dict:
    log = log or (lambda msg: None)
    try:
        with open(config_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read {config_path}: {e}")
    if not isinstance(cfg, dict) or "text_config" not in cfg or "vision_config" not in cfg:
        raise ExportError(f"{config_path} is not a PaliGemma config (text_config/vision_config missing)")
    v = cfg["vision_config"]
    from .checkpoint import parse_config
    if image_size:
        v["image_size"] = image_size
    _, vision = parse_config(cfg)
    v["num_image_tokens"] = vision.num_image_tokens
    if os.path.exists(out) and os.listdir(out):
        if not force:
            raise ExportError(f"{out} exists and is not empty (use --force)")
        shutil.rmtree(out)
    os.makedirs(out, exist_ok=True)

    import torch
    gen = torch.Generator().manual_seed(seed)
    specs = tensor_specs(cfg)
    shards: List[List] = [[]]
    size = 0
    for spec in specs:
        b = 2 * _numel(spec[1])
        if shards[-1] and size + b > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += b
    total = sum(2 * _numel(s[1]) for s in specs)
    weight_map = {}
    for i, shard in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        log(f"writing {fn} ({len(shard)} tensors)")
        _write_shard(os.path.join(out, fn), shard, gen)
        for name, _, _ in shard:
            weight_map[name] = fn
    with open(os.path.join(out, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(_FIXTURE, "preprocessor_config.json"), encoding="utf-8") as f:
        pre = json.load(f)
    pre["size"] = {"height": vision.image_size, "width": vision.image_size}
    pre["image_seq_length"] = v["num_image_tokens"]
    with open(os.path.join(out, "preprocessor_config.json"), "w", encoding="utf-8") as f:
        json.dump(pre, f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(_FIXTURE, fn), os.path.join(out, fn))
    log(f"wrote {out}: {len(specs)} tensors, {total / 1e9:.2f} GB in {len(shards)} shards")
    return {"tensors": len(specs), "bytes": total, "shards": len(shards)}
