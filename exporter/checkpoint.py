"""Locating and reading a Hugging Face PaliGemma 2 checkpoint: folder or HF cache, config, tensor names.

All tensor-name normalisation lives in `canonical_name`: old hub names (`language_model.model.…`,
`vision_tower.vision_model.…`, `multi_modal_projector.…`) and transformers-5 names (`model.language_model.…`,
`model.vision_tower.vision_model.…`, `model.multi_modal_projector.…`, `lm_head.weight`) both map to
`language.…`, `vision.…`, `projector.…`, `lm_head.…`.
"""

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .errors import ExportError

# No torch import at module level: input validation (config, tokenizer, VAE, output folder) runs before
# torch is imported, so bad invocations fail in a fraction of a second.

_PREFIXES = [
    ("model.language_model.model.", "language."),
    ("model.language_model.", "language."),
    ("language_model.model.", "language."),
    ("model.vision_tower.vision_model.", "vision."),
    ("vision_tower.vision_model.", "vision."),
    ("model.multi_modal_projector.", "projector."),
    ("multi_modal_projector.", "projector."),
    ("language_model.lm_head.", "lm_head."),
    ("lm_head.", "lm_head."),
]

DTYPE_NAMES = ("bfloat16", "float16", "float32")
_STORAGE_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}


def canonical_name(name: str) -> Optional[str]:
    for old, new in _PREFIXES:
        if name.startswith(old):
            return new + name[len(old):]
    return None


def hub_name(canonical: str) -> str:
    """The old-style hub name of a canonical tensor name (for messages about missing tensors)."""
    for old, new in (("language.", "language_model.model."), ("vision.", "vision_tower.vision_model."),
                     ("projector.", "multi_modal_projector.")):
        if canonical.startswith(old):
            return new + canonical[len(old):]
    return canonical


def check_dtype_name(name: str) -> str:
    if name not in DTYPE_NAMES:
        raise ExportError(f"unknown dtype {name!r} (expected one of {', '.join(DTYPE_NAMES)})")
    return name


def torch_dtype(name: str):
    import torch
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[check_dtype_name(name)]


def _read_json(path: str, what: str):
    if not os.path.isfile(path):
        raise ExportError(f"missing {what}: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"cannot read {what} {path}: {e}")


def resolve_source(path: str):
    """(checkpoint folder, model id or None, revision or None). Accepts a checkpoint folder, a Hugging Face
    cache folder `models--org--name` (refs/main -> snapshots/<commit>), or a snapshot folder inside one."""
    if not os.path.exists(path):
        raise ExportError(f"checkpoint folder does not exist: {path}")
    if not os.path.isdir(path):
        raise ExportError(f"checkpoint path is not a folder: {path}")
    path = os.path.abspath(path)
    base = os.path.basename(path.rstrip(os.sep))
    if base.startswith("models--") and os.path.isdir(os.path.join(path, "snapshots")):
        model_id = "/".join(base[len("models--"):].split("--"))
        ref = os.path.join(path, "refs", "main")
        revision = None
        if os.path.isfile(ref):
            with open(ref, "r", encoding="utf-8") as f:
                revision = f.read().strip() or None
        if revision is None:
            snaps = sorted(os.listdir(os.path.join(path, "snapshots")))
            if len(snaps) != 1:
                raise ExportError(f"HF cache folder {path} has no refs/main and {len(snaps)} snapshots")
            revision = snaps[0]
        snap = os.path.join(path, "snapshots", revision)
        if not os.path.isdir(snap):
            raise ExportError(f"HF cache folder {path}: refs/main names {revision}, but snapshots/{revision} is missing")
        return snap, model_id, revision
    parent = os.path.dirname(path)
    grand = os.path.basename(os.path.dirname(parent))
    if os.path.basename(parent) == "snapshots" and grand.startswith("models--"):
        return path, "/".join(grand[len("models--"):].split("--")), base
    return path, None, None


@dataclass
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    query_pre_attn_scalar: float
    attn_softcap: float
    final_softcap: float
    sliding_window: int
    max_position_embeddings: int
    sliding: List[bool] = field(default_factory=list)


@dataclass
class VisionConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    num_channels: int
    image_size: int
    patch_size: int

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def _get(cfg, key, default, kind, where):
    v = cfg.get(key, default)
    if v is None:
        v = default
    try:
        if kind is bool or isinstance(v, bool):
            raise TypeError
        return kind(v)
    except (TypeError, ValueError):
        raise ExportError(f"config.json: {where}.{key} = {v!r} is not a valid {kind.__name__}")


def parse_config(cfg: dict, preprocessor: dict):
    """TextConfig and VisionConfig with transformers' Gemma2Config / SiglipVisionConfig defaults for missing
    fields (hub configs such as google/paligemma2-3b-mix-448 omit many)."""
    if not isinstance(cfg, dict):
        raise ExportError("config.json is not a JSON object")
    if cfg.get("model_type") != "paligemma":
        raise ExportError(f"config.json: model_type is {cfg.get('model_type')!r}, expected 'paligemma' (not a PaliGemma checkpoint)")
    archs = cfg.get("architectures") or []
    if archs and "PaliGemmaForConditionalGeneration" not in archs:
        raise ExportError(f"config.json: architectures {archs} do not include PaliGemmaForConditionalGeneration")
    tc = cfg.get("text_config")
    vc = cfg.get("vision_config")
    if not isinstance(tc, dict):
        raise ExportError("config.json: text_config is missing")
    if tc.get("model_type") != "gemma2":
        raise ExportError(f"config.json: text_config.model_type is {tc.get('model_type')!r}, expected 'gemma2' (PaliGemma 2)")
    if not isinstance(vc, dict):
        raise ExportError("config.json: vision_config is missing")
    if vc.get("model_type") not in ("siglip_vision_model", "siglip", None):
        raise ExportError(f"config.json: vision_config.model_type is {vc.get('model_type')!r}, expected 'siglip_vision_model'")
    act = tc.get("hidden_activation") or tc.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise ExportError(f"config.json: text_config.hidden_activation {act!r} is not supported (expected gelu_pytorch_tanh)")

    w = "text_config"
    vocab = tc.get("vocab_size") or cfg.get("vocab_size") or 257216
    text = TextConfig(
        vocab_size=_get({"v": vocab}, "v", 257216, int, w),
        hidden_size=_get(tc, "hidden_size", 2304, int, w),
        intermediate_size=_get(tc, "intermediate_size", 9216, int, w),
        num_layers=_get(tc, "num_hidden_layers", 26, int, w),
        num_heads=_get(tc, "num_attention_heads", 8, int, w),
        num_kv_heads=_get(tc, "num_key_value_heads", 4, int, w),
        head_dim=_get(tc, "head_dim", 256, int, w),
        rms_norm_eps=_get(tc, "rms_norm_eps", 1e-6, float, w),
        rope_theta=_get(tc, "rope_theta", 10000.0, float, w),
        query_pre_attn_scalar=_get(tc, "query_pre_attn_scalar", 256, float, w),
        attn_softcap=_get(tc, "attn_logit_softcapping", 0.0, float, w),
        final_softcap=_get(tc, "final_logit_softcapping", 0.0, float, w),
        sliding_window=_get(tc, "sliding_window", 4096, int, w),
        max_position_embeddings=_get(tc, "max_position_embeddings", 8192, int, w),
    )
    if text.num_heads % max(text.num_kv_heads, 1) != 0 or text.num_kv_heads < 1:
        raise ExportError(f"config.json: num_attention_heads {text.num_heads} is not a multiple of num_key_value_heads {text.num_kv_heads}")
    if text.head_dim % 2:
        raise ExportError(f"config.json: head_dim {text.head_dim} must be even (RoPE)")
    layer_types = tc.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != text.num_layers or any(
                t not in ("sliding_attention", "full_attention") for t in layer_types):
            raise ExportError(f"config.json: text_config.layer_types must list {text.num_layers} of sliding_attention/full_attention")
        text.sliding = [t == "sliding_attention" for t in layer_types]
    else:
        # transformers' Gemma2Config: layer i is sliding when (i + 1) % 2 == 1, i.e. even layers.
        text.sliding = [(i + 1) % 2 == 1 for i in range(text.num_layers)]

    w = "vision_config"
    size = preprocessor.get("size") or {}
    pre_size = size.get("height") if isinstance(size, dict) else None
    vision = VisionConfig(
        hidden_size=_get(vc, "hidden_size", 768, int, w),
        intermediate_size=_get(vc, "intermediate_size", 3072, int, w),
        num_layers=_get(vc, "num_hidden_layers", 12, int, w),
        num_heads=_get(vc, "num_attention_heads", 12, int, w),
        layer_norm_eps=_get(vc, "layer_norm_eps", 1e-6, float, w),
        num_channels=_get(vc, "num_channels", 3, int, w),
        image_size=_get(vc, "image_size", pre_size or 224, int, w),
        patch_size=_get(vc, "patch_size", 16, int, w),
    )
    if vision.hidden_size % vision.num_heads:
        raise ExportError(f"config.json: vision hidden_size {vision.hidden_size} is not a multiple of num_attention_heads {vision.num_heads}")
    if pre_size is not None and int(pre_size) != vision.image_size:
        raise ExportError(f"preprocessor_config.json: size {pre_size} differs from vision_config.image_size {vision.image_size}")
    return text, vision


def weight_files(folder: str) -> List[str]:
    """The safetensors files of a checkpoint folder (sharded via the index, or model.safetensors)."""
    index_path = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index_path):
        index = _read_json(index_path, "safetensors index")
        wm = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wm, dict):
            raise ExportError(f"{index_path} has no weight_map")
        files = sorted(set(wm.values()))
    elif os.path.isfile(os.path.join(folder, "model.safetensors")):
        files = ["model.safetensors"]
    else:
        raise ExportError(f"no model.safetensors or model.safetensors.index.json in {folder}")
    for fn in files:
        if not os.path.isfile(os.path.join(folder, fn)):
            raise ExportError(f"missing safetensors file {os.path.join(folder, fn)} (named in the index)")
    return files


class Checkpoint:
    """Tensors of a checkpoint folder by canonical name, read lazily from mmapped safetensors files."""

    def __init__(self, folder: str):
        self.folder = folder
        files = weight_files(folder)
        from .safetensors_io import SafetensorsFile
        self._files: Dict[str, "SafetensorsFile"] = {}
        self._where: Dict[str, tuple] = {}  # canonical -> (file name, original name)
        try:
            for fn in files:
                st = SafetensorsFile(os.path.join(folder, fn))
                self._files[fn] = st
                for name in st.keys():
                    c = canonical_name(name)
                    if c is not None:
                        self._where[c] = (fn, name)
        except Exception:
            self.close()
            raise

    def has(self, canonical: str) -> bool:
        return canonical in self._where

    def source_name(self, canonical: str) -> str:
        return self._where[canonical][1] if canonical in self._where else hub_name(canonical)

    def info(self, canonical: str):
        fn, name = self._where[canonical]
        return self._files[fn].info(name)

    def get(self, canonical: str):
        if canonical not in self._where:
            raise ExportError(f"missing tensor {hub_name(canonical)}")
        fn, name = self._where[canonical]
        return self._files[fn].get(name)

    def release(self):
        for st in self._files.values():
            st.release()

    def storage_dtype(self) -> Optional[str]:
        """The dtype name the embedding is stored in (None if not a float dtype we export)."""
        if "language.embed_tokens.weight" not in self._where:
            return None
        return _STORAGE_DTYPES.get(self.info("language.embed_tokens.weight")[0])

    def close(self):
        for st in self._files.values():
            st.close()
        self._files = {}


def read_json(path: str, what: str):
    return _read_json(path, what)
