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


# transformers' defaults for every config field the exporter reads. Read from transformers 4.47.0 (the release
# that added PaliGemma 2 and writes the Hub's PaliGemma 2 configs, "transformers_version": "4.47.0.dev0") and
# checked unchanged in the current main branch (5.x) for these fields; where the two differ it is said below.
# config.json as save_pretrained writes it holds only the values that differ from these (use_diff=True), so
# every absent key means exactly this value.

# configuration_paligemma.py, PaliGemmaConfig.__init__ keyword defaults.
PALIGEMMA_DEFAULTS = {
    "image_token_index": 256000,
    "vocab_size": 257152,  # used only when text_config is absent (PaliGemma 1's Gemma); stored as _vocab_size
    "projection_dim": 2048,  # overrides vision_config.projection_dim: the projector's output width
    "hidden_size": 2048,  # unused by the model (images are scaled by text_config.hidden_size)
}

# configuration_gemma2.py, Gemma2Config.__init__ keyword defaults (the Gemma 2 2B shape).
GEMMA2_DEFAULTS = {
    "vocab_size": 256000,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,  # its own default, NOT hidden_size // num_attention_heads
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,  # 5.x: rope_parameters["rope_theta"], same default
    "attention_bias": False,
    "query_pre_attn_scalar": 256,  # attention scaling is query_pre_attn_scalar ** -0.5, not head_dim ** -0.5
    "sliding_window": 4096,
    "final_logit_softcapping": 30.0,  # None (JSON null) turns it off
    "attn_logit_softcapping": 50.0,  # None (JSON null) turns it off
    "tie_word_embeddings": True,
    # layer_types: absent or None -> derived from num_hidden_layers (4.47: Gemma2DecoderLayer.is_sliding =
    # not bool(layer_idx % 2); 5.x: "sliding_attention" if bool((i + 1) % 2) else "full_attention").
}

# configuration_siglip.py, SiglipVisionConfig.__init__ keyword defaults (used when vision_config is a dict).
SIGLIP_VISION_DEFAULTS = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_channels": 3,
    "image_size": 224,
    "patch_size": 16,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
}

# PaliGemmaConfig.__init__ when vision_config is absent: SiglipVisionConfig with these overrides (PaliGemma 1's
# SigLIP So400m/14 at 224 px; its intermediate_size 4096 differs from PaliGemma 2's 4304, which every PaliGemma 2
# config therefore spells out).
PALIGEMMA_VISION_OVERRIDES = {
    "intermediate_size": 4096,
    "hidden_size": 1152,
    "patch_size": 14,
    "image_size": 224,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
}


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
    attn_softcap: float  # 0.0: off (config null)
    final_softcap: float  # 0.0: off (config null)
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
        # PaliGemmaConfig: text_config.num_image_tokens = (image_size // patch_size) ** 2, whatever the file says.
        return (self.image_size // self.patch_size) ** 2


class _Section:
    """One config object (top level, text_config or vision_config) read with its class's defaults; remembers
    which values were defaults so messages can say "absent: the Gemma2Config default"."""

    def __init__(self, cfg: dict, where: str, defaults: dict, cls: str):
        self.cfg, self.where, self.defaults, self.cls = cfg, where, defaults, cls

    def describe(self, key: str) -> str:
        if key in self.cfg:
            return f"{self.where}.{key} = {self.cfg[key]!r}"
        return f"{self.where}.{key} (absent: the {self.cls} default {self.defaults[key]!r})"

    def get(self, key: str, kind, nullable: bool = False):
        v = self.cfg.get(key, self.defaults[key])
        if v is None:
            if nullable:
                return None
            raise ExportError(f"config.json: {self.where}.{key} is null (transformers has no meaning for that)")
        try:
            if kind is bool:
                if not isinstance(v, bool):
                    raise TypeError
                return v
            if isinstance(v, bool):
                raise TypeError
            out = kind(v)
            if kind is int and out != v:  # 2.5 is not an int
                raise ValueError
            return out
        except (TypeError, ValueError):
            raise ExportError(f"config.json: {self.where}.{key} = {v!r} is not a valid {kind.__name__}")


def _positive(section: "_Section", key: str, value) -> None:
    if value <= 0:
        raise ExportError(f"config.json: {section.describe(key)} must be positive")


def parse_config(cfg: dict, preprocessor: Optional[dict] = None):
    """TextConfig and VisionConfig of a PaliGemma 2 config.json read as transformers reads it: every absent key
    takes its class's default (the tables above), derived values are derived as transformers does."""
    preprocessor = preprocessor or {}
    if not isinstance(cfg, dict):
        raise ExportError("config.json is not a JSON object")
    if cfg.get("model_type") != "paligemma":
        raise ExportError(f"config.json: model_type is {cfg.get('model_type')!r}, expected 'paligemma' (not a PaliGemma checkpoint)")
    archs = cfg.get("architectures") or []
    if archs and "PaliGemmaForConditionalGeneration" not in archs:
        raise ExportError(f"config.json: architectures {archs} do not include PaliGemmaForConditionalGeneration")
    tc = cfg.get("text_config")
    vc = cfg.get("vision_config")
    # PaliGemmaConfig builds an absent text_config, or one without model_type, as a Gemma (1) config: that is
    # PaliGemma 1, whose decoder (no soft-caps, no sliding window, other norms) this exporter does not build.
    if tc is None:
        raise ExportError("config.json: text_config is absent, which transformers reads as PaliGemma 1's Gemma "
                          "decoder; only PaliGemma 2 (text_config.model_type 'gemma2') is supported")
    if not isinstance(tc, dict):
        raise ExportError("config.json: text_config is not a JSON object")
    text_type = tc.get("model_type", "gemma")
    if text_type != "gemma2":
        hint = " (PaliGemma 1)" if text_type == "gemma" else ""
        raise ExportError(f"config.json: text_config.model_type is {text_type!r}{hint}, expected 'gemma2' "
                          "(only PaliGemma 2 is supported)")
    if vc is None:
        vision_defaults, vision_cls, vc = dict(SIGLIP_VISION_DEFAULTS, **PALIGEMMA_VISION_OVERRIDES), \
            "PaliGemmaConfig (no vision_config)", {}
    elif isinstance(vc, dict):
        vision_defaults, vision_cls = SIGLIP_VISION_DEFAULTS, "SiglipVisionConfig"
        if vc.get("model_type", "siglip_vision_model") != "siglip_vision_model":
            raise ExportError(f"config.json: vision_config.model_type is {vc.get('model_type')!r}, expected 'siglip_vision_model'")
    else:
        raise ExportError("config.json: vision_config is not a JSON object")

    top = _Section(cfg, "config", PALIGEMMA_DEFAULTS, "PaliGemmaConfig")
    t = _Section(tc, "text_config", GEMMA2_DEFAULTS, "Gemma2Config")
    v = _Section(vc, "vision_config", vision_defaults, vision_cls)

    act = t.get("hidden_activation", str)  # Gemma2MLP uses hidden_activation; a legacy hidden_act is ignored
    if act not in ("gelu_pytorch_tanh", "gelu_new"):  # both are tanh-approximated GELU
        raise ExportError(f"config.json: {t.describe('hidden_activation')} is not supported (expected gelu_pytorch_tanh)")
    if t.get("attention_bias", bool):
        raise ExportError("config.json: text_config.attention_bias is true; PaliGemma 2 has no attention biases")
    if not t.get("tie_word_embeddings", bool):
        raise ExportError("config.json: text_config.tie_word_embeddings is false; PaliGemma 2's LM head is the "
                          "embedding (tied)")
    rope_theta = t.get("rope_theta", float)
    params = tc.get("rope_parameters")  # transformers 5 writes RoPE settings here
    if isinstance(params, dict):
        if params.get("rope_type", "default") != "default":
            raise ExportError(f"config.json: text_config.rope_parameters.rope_type {params.get('rope_type')!r} "
                              "is not supported (Gemma 2 uses default RoPE)")
        if "rope_theta" in params:
            rope_theta = _Section(params, "text_config.rope_parameters", GEMMA2_DEFAULTS, "Gemma2Config").get(
                "rope_theta", float)
    attn_cap = t.get("attn_logit_softcapping", float, nullable=True)
    final_cap = t.get("final_logit_softcapping", float, nullable=True)
    for key, cap in (("attn_logit_softcapping", attn_cap), ("final_logit_softcapping", final_cap)):
        if cap is not None and cap <= 0:  # transformers divides by it: 0 is not "off" there but NaN
            raise ExportError(f"config.json: {t.describe(key)} must be positive (null turns the cap off)")

    text = TextConfig(
        vocab_size=t.get("vocab_size", int),
        hidden_size=t.get("hidden_size", int),
        intermediate_size=t.get("intermediate_size", int),
        num_layers=t.get("num_hidden_layers", int),
        num_heads=t.get("num_attention_heads", int),
        num_kv_heads=t.get("num_key_value_heads", int),
        head_dim=t.get("head_dim", int),
        rms_norm_eps=t.get("rms_norm_eps", float),
        rope_theta=rope_theta,
        query_pre_attn_scalar=t.get("query_pre_attn_scalar", float),
        attn_softcap=attn_cap or 0.0,
        final_softcap=final_cap or 0.0,
        sliding_window=t.get("sliding_window", int),
        max_position_embeddings=t.get("max_position_embeddings", int),
    )
    for key, value in (("vocab_size", text.vocab_size), ("hidden_size", text.hidden_size),
                       ("intermediate_size", text.intermediate_size), ("num_hidden_layers", text.num_layers),
                       ("num_attention_heads", text.num_heads), ("num_key_value_heads", text.num_kv_heads),
                       ("head_dim", text.head_dim), ("query_pre_attn_scalar", text.query_pre_attn_scalar),
                       ("sliding_window", text.sliding_window),
                       ("max_position_embeddings", text.max_position_embeddings),
                       ("rms_norm_eps", text.rms_norm_eps), ("rope_theta", text.rope_theta)):
        _positive(t, key, value)
    if text.num_heads % text.num_kv_heads != 0:
        raise ExportError(f"config.json: {t.describe('num_attention_heads')} is not a multiple of "
                          f"{t.describe('num_key_value_heads')}")
    if text.head_dim % 2:
        raise ExportError(f"config.json: {t.describe('head_dim')} must be even (RoPE)")
    layer_types = tc.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != text.num_layers or any(
                lt not in ("sliding_attention", "full_attention") for lt in layer_types):
            raise ExportError(f"config.json: text_config.layer_types must list {text.num_layers} of sliding_attention/full_attention")
        text.sliding = [lt == "sliding_attention" for lt in layer_types]
    else:
        # Gemma2Config: layer i slides when (i + 1) % 2 == 1, i.e. the even layers.
        text.sliding = [(i + 1) % 2 == 1 for i in range(text.num_layers)]

    vision = VisionConfig(
        hidden_size=v.get("hidden_size", int),
        intermediate_size=v.get("intermediate_size", int),
        num_layers=v.get("num_hidden_layers", int),
        num_heads=v.get("num_attention_heads", int),
        layer_norm_eps=v.get("layer_norm_eps", float),
        num_channels=v.get("num_channels", int),
        image_size=v.get("image_size", int),
        patch_size=v.get("patch_size", int),
    )
    for key, value in (("hidden_size", vision.hidden_size), ("intermediate_size", vision.intermediate_size),
                       ("num_hidden_layers", vision.num_layers), ("num_attention_heads", vision.num_heads),
                       ("num_channels", vision.num_channels), ("image_size", vision.image_size),
                       ("patch_size", vision.patch_size), ("layer_norm_eps", vision.layer_norm_eps)):
        _positive(v, key, value)
    vact = v.get("hidden_act", str)
    if vact not in ("gelu_pytorch_tanh", "gelu_new"):
        raise ExportError(f"config.json: {v.describe('hidden_act')} is not supported (expected gelu_pytorch_tanh)")
    if vision.hidden_size % vision.num_heads:
        raise ExportError(f"config.json: vision hidden_size {vision.hidden_size} is not a multiple of num_attention_heads {vision.num_heads}")
    if vision.image_size % vision.patch_size:
        raise ExportError(f"config.json: {v.describe('image_size')} is not a multiple of {v.describe('patch_size')}")
    # The projector maps vision features to PaliGemmaConfig.projection_dim (it overrides
    # vision_config.projection_dim); they replace <image> embeddings, so it must be the text width.
    projection_dim = top.get("projection_dim", int)
    if projection_dim != text.hidden_size:
        raise ExportError(f"config.json: {top.describe('projection_dim')} differs from {t.describe('hidden_size')}: "
                          "the projector's output replaces text embeddings")

    size = preprocessor.get("size") or {}
    pre_size = size.get("height") if isinstance(size, dict) else None
    if pre_size is not None and int(pre_size) != vision.image_size:
        raise ExportError(f"preprocessor_config.json: size {pre_size} differs from {v.describe('image_size')}")
    seq = preprocessor.get("image_seq_length")
    if seq is not None and int(seq) != vision.num_image_tokens:
        raise ExportError(f"preprocessor_config.json: image_seq_length {seq} differs from the "
                          f"{vision.num_image_tokens} image tokens of {v.describe('image_size')} and "
                          f"{v.describe('patch_size')}")
    return text, vision


def image_token_index(cfg: dict) -> int:
    """PaliGemmaConfig.image_token_index (transformers maps image_token_id onto it)."""
    key = "image_token_id" if "image_token_id" in cfg and "image_token_index" not in cfg else "image_token_index"
    defaults = dict(PALIGEMMA_DEFAULTS, image_token_id=PALIGEMMA_DEFAULTS["image_token_index"])
    return _Section(cfg, "config", defaults, "PaliGemmaConfig").get(key, int)


def check_weights(ckpt: "Checkpoint", text: TextConfig, vision: VisionConfig) -> None:
    """The architecture the config describes against the tensors' shapes, before any module is built, naming
    the config field (or the default it fell back to) and the tensor (transformers would fail to load these
    with a size mismatch)."""
    def shape(name):
        if not ckpt.has(name):
            raise ExportError(f"missing tensor {ckpt.source_name(name)}")
        return tuple(int(s) for s in ckpt.info(name)[1])

    def expect(name, dim, got, want, what):
        if got != want:
            raise ExportError(f"config.json and weights disagree: {what} is {want}, but tensor "
                              f"{ckpt.source_name(name)} has {got} (dimension {dim} of {list(shape(name))})")

    emb = "language.embed_tokens.weight"
    rows, cols = shape(emb)
    expect(emb, 0, rows, text.vocab_size, "text_config.vocab_size")
    expect(emb, 1, cols, text.hidden_size, "text_config.hidden_size")
    q = "language.layers.0.self_attn.q_proj.weight"
    expect(q, 0, shape(q)[0], text.num_heads * text.head_dim,
           f"num_attention_heads x head_dim ({text.num_heads} x {text.head_dim})")
    k = "language.layers.0.self_attn.k_proj.weight"
    expect(k, 0, shape(k)[0], text.num_kv_heads * text.head_dim,
           f"num_key_value_heads x head_dim ({text.num_kv_heads} x {text.head_dim})")
    g = "language.layers.0.mlp.gate_proj.weight"
    expect(g, 0, shape(g)[0], text.intermediate_size, "text_config.intermediate_size")
    n_text = _layer_count(ckpt, "language.layers.")
    if n_text != text.num_layers:
        raise ExportError(f"config.json and weights disagree: text_config.num_hidden_layers is {text.num_layers}, "
                          f"but the weights hold {n_text} language layers")
    n_vis = _layer_count(ckpt, "vision.encoder.layers.")
    if n_vis != vision.num_layers:
        raise ExportError(f"config.json and weights disagree: vision_config.num_hidden_layers is "
                          f"{vision.num_layers}, but the weights hold {n_vis} vision layers")
    pos = "vision.embeddings.position_embedding.weight"
    expect(pos, 0, shape(pos)[0], vision.num_image_tokens,
           f"the number of image tokens ((image_size {vision.image_size} // patch_size {vision.patch_size})^2)")
    expect(pos, 1, shape(pos)[1], vision.hidden_size, "vision_config.hidden_size")
    fc1 = "vision.encoder.layers.0.mlp.fc1.weight"
    expect(fc1, 0, shape(fc1)[0], vision.intermediate_size, "vision_config.intermediate_size")
    patch = "vision.embeddings.patch_embedding.weight"
    expect(patch, 2, shape(patch)[2], vision.patch_size, "vision_config.patch_size")
    proj = "projector.linear.weight"
    expect(proj, 0, shape(proj)[0], text.hidden_size, "projection_dim (= text_config.hidden_size)")


def _layer_count(ckpt: "Checkpoint", prefix: str) -> int:
    """1 + the highest layer index with any tensor under prefix (0 when none)."""
    top = -1
    for name in ckpt.names():
        if name.startswith(prefix):
            idx = name[len(prefix):].split(".", 1)[0]
            if idx.isdigit():
                top = max(top, int(idx))
    return top + 1


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

    def names(self) -> List[str]:
        return list(self._where)

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
