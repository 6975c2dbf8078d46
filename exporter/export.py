"""The export itself: checkpoint + VAE -> bundle folder (docs/bundle-format.md), written atomically.

Memory: modules are allocated once in the target dtype (torch.empty) and filled tensor by tensor from the
mmapped safetensors files; mapped pages are dropped after each copy. Vision, language and VAE are built,
scripted, saved and freed one after another, so the peak is about the largest module plus one tensor.
"""

import gc
import hashlib
import json
import os
import shutil
import tempfile
from typing import Callable, Dict, Optional

from . import FORMAT_VERSION, __version__
from .checkpoint import (Checkpoint, check_dtype_name, check_weights, image_token_index, parse_config, read_json,
                         resolve_source, torch_dtype, weight_files)
from .errors import ExportError
from .safetensors_io import write_streaming

# torch (slow to import) is imported only after every cheap input check has passed.

_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _shape_str(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _checked_source(param, src: str, get: Callable, display: Callable[[str], str]):
    """The checkpoint tensor `src` for `param`, checked for shape and float dtype (not yet converted)."""
    t = get(src)
    if tuple(t.shape) != tuple(param.shape):
        raise ExportError(f"tensor {display(src)} has shape {_shape_str(t.shape)}, expected {_shape_str(param.shape)}")
    if not t.is_floating_point():
        raise ExportError(f"tensor {display(src)} has non-float dtype {t.dtype}")
    return t


def fill_parameters(module, source_of: Callable[[str], str], get: Callable,
                    display: Callable[[str], str], after_each: Optional[Callable[[], None]] = None):
    """Copy every parameter of `module` from `get(source_of(param name))`, converting to the parameter dtype
    (eager modules for the tests; export streams instead, see save_module)."""
    import torch
    with torch.no_grad():
        for pname, param in module.named_parameters():
            src = source_of(pname)
            t = _checked_source(param, src, get, display)
            param.copy_(t)
            del t
            if after_each is not None:
                after_each()


def _vision_source(pname: str) -> str:
    fixed = {
        "embeddings.patch_embedding_weight": "vision.embeddings.patch_embedding.weight",
        "embeddings.patch_embedding_bias": "vision.embeddings.patch_embedding.bias",
        "embeddings.position_embedding": "vision.embeddings.position_embedding.weight",
        "projector.weight": "projector.linear.weight",
        "projector.bias": "projector.linear.bias",
    }
    return fixed.get(pname, "vision." + pname)


def _language_source(pname: str) -> str:
    return "language.embed_tokens.weight" if pname == "embed_tokens" else "language." + pname


def _vae_source(pname: str) -> str:
    return "_vq_vae._embedding" if pname == "embedding" else pname


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _token_ids(tokenizer: dict) -> Dict[str, int]:
    """Special token ids looked up by content in tokenizer.json (added tokens first, then the vocabulary)."""
    table: Dict[str, int] = {}
    model = tokenizer.get("model") if isinstance(tokenizer, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if isinstance(vocab, dict):
        table.update({k: int(v) for k, v in vocab.items()})
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        table.update({e[0]: i for i, e in enumerate(vocab) if isinstance(e, list) and e})
    for t in tokenizer.get("added_tokens") or []:
        if isinstance(t, dict) and "content" in t and "id" in t:
            table[t["content"]] = int(t["id"])
    wanted = {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "image": "<image>", "newline": "\n",
              "loc0": "<loc0000>", "seg0": "<seg000>"}
    out = {}
    for key, content in wanted.items():
        if content not in table:
            raise ExportError(f"tokenizer.json has no token {content!r} ({key})")
        out[key] = table[content]
    return out


def vae_shapes() -> Dict[str, tuple]:
    """Keys and shapes of big_vision's vae-oid.npz decoder (a PyTorch state dict saved with numpy)."""
    shapes = {"_vq_vae._embedding": (128, 512), "decoder.0.weight": (128, 512, 1, 1), "decoder.0.bias": (128,)}
    for block in (2, 3):
        for layer, k in ((0, 3), (2, 3), (4, 1)):
            shapes[f"decoder.{block}.net.{layer}.weight"] = (128, 128, k, k)
            shapes[f"decoder.{block}.net.{layer}.bias"] = (128,)
    for idx, (cin, cout) in zip((4, 6, 8, 10), ((128, 128), (128, 64), (64, 32), (32, 16))):
        shapes[f"decoder.{idx}.weight"] = (cin, cout, 4, 4)
        shapes[f"decoder.{idx}.bias"] = (cout,)
    shapes["decoder.12.weight"] = (1, 16, 1, 1)
    shapes["decoder.12.bias"] = (1,)
    return shapes


def _load_vae(path: str):
    import numpy as np
    if not os.path.isfile(path):
        raise ExportError(f"VAE file does not exist: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError ...
        raise ExportError(f"cannot read VAE file {path} as a numpy .npz: {e}")


def _check_vae(arrays, path: str):
    """Name every missing or misshapen VAE key before any heavy work."""
    missing, bad = [], []
    for key, shape in vae_shapes().items():
        if key not in arrays:
            missing.append(key)
        elif tuple(arrays[key].shape) != shape:
            bad.append(f"{key} has shape {_shape_str(arrays[key].shape)}, expected {_shape_str(shape)}")
        elif arrays[key].dtype.kind != "f":
            bad.append(f"{key} has non-float dtype {arrays[key].dtype}")
    if missing:
        raise ExportError(f"VAE file {path} is missing keys: {', '.join(missing)}")
    if bad:
        raise ExportError(f"VAE file {path}: {'; '.join(bad)}")


def _prepare_out(out: str, force: bool) -> str:
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ExportError(f"output path exists and is not a folder: {out}")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise ExportError(f"output folder {out} exists and is not empty (use --force to replace it)")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ExportError(f"output folder {out} is not writable: {e.strerror}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ExportError(f"output folder {out} is not writable (no write access to {parent})")
    return out


def save_module(module, path: str, source_of: Callable[[str], str], get: Callable,
                display: Callable[[str], str], after_each: Optional[Callable[[], None]] = None):
    """Save `module` as TorchScript code (path, e.g. vision.pt) with its weights beside it in
    path-without-.pt + .safetensors, keyed by parameter name. The weights stream from the checkpoint
    (`get(source_of(name))`, checked and converted to the parameter's dtype) into the file one tensor at a
    time: the module's own parameters (torch.empty) are never filled, so the export holds about one
    tensor in memory. The archive keeps a one-element, zero-stride placeholder of the right shape and dtype
    per parameter: the engine maps the weights file and puts its tensors in their place, so a load neither
    copies the weights out of a zip nor allocates them twice (docs/bundle-format.md)."""
    import torch
    module.eval()
    weights_path = path[: -len(".pt")] + ".safetensors"
    params = list(module.named_parameters())
    by_name = dict(params)

    def fetch(pname):
        param = by_name[pname]
        return _checked_source(param, source_of(pname), get, display).to(param.dtype)

    try:
        write_streaming([(n, p.dtype, tuple(p.shape)) for n, p in params], weights_path, fetch, after_each)
    except OSError as e:
        raise ExportError(f"writing {weights_path} failed: {e.strerror or e}")
    with torch.no_grad():
        for _, p in params:
            # One stored element, broadcast (stride 0) to the real shape: the archive stays small and the
            # engine can check every tensor of the weights file against the shape the module expects.
            p.data = torch.zeros((), dtype=p.dtype).expand(p.shape)
    del params, by_name
    scripted = torch.jit.script(module)
    try:
        torch.jit.save(scripted, path)
    except RuntimeError as e:  # e.g. disk full: torch reports write failures as RuntimeError
        raise ExportError(f"writing {path} failed: {str(e).splitlines()[0] if str(e) else e}")
    del scripted


def export(checkpoint: str, vae: str, out: str, dtype: Optional[str] = None, force: bool = False,
           model_id: Optional[str] = None, revision: Optional[str] = None, log=None) -> dict:
    """Export and return the manifest. Raises ExportError with a one-line message on bad input."""
    log = log or (lambda msg: None)
    target_name = check_dtype_name(dtype) if dtype is not None else None
    folder, cache_id, cache_rev = resolve_source(checkpoint)
    cfg = read_json(os.path.join(folder, "config.json"), "config.json")
    pre = read_json(os.path.join(folder, "preprocessor_config.json"), "preprocessor_config.json")
    if not isinstance(pre, dict):
        raise ExportError("preprocessor_config.json is not a JSON object")
    text, vision = parse_config(cfg, pre)
    weight_files(folder)
    tok_path = os.path.join(folder, "tokenizer.json")
    tokens = _token_ids(read_json(tok_path, "tokenizer.json"))
    if image_token_index(cfg) != tokens["image"]:
        absent = "" if "image_token_index" in cfg or "image_token_id" in cfg else " (absent: PaliGemmaConfig's default)"
        raise ExportError(f"config.json: image_token_index {image_token_index(cfg)}{absent} is not tokenizer.json's "
                          f"<image> id {tokens['image']}")
    vae_arrays = _load_vae(vae)
    _check_vae(vae_arrays, vae)
    out = _prepare_out(out, force)

    import torch
    from .modules import Gemma2Language, VAEDecoder, VisionTower

    ckpt = Checkpoint(folder)
    tmp = None
    try:
        if target_name is None:
            # The checkpoint's own dtype: what its tensors are stored in, else config torch_dtype/dtype.
            target_name = ckpt.storage_dtype()
            if target_name is None:
                name = cfg.get("torch_dtype") or cfg.get("dtype") or (cfg.get("text_config") or {}).get("torch_dtype")
                target_name = check_dtype_name(name or "float32")
        target_dtype = torch_dtype(target_name)
        check_weights(ckpt, text, vision)
        try:
            tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".tmp-", dir=os.path.dirname(out))
        except OSError as e:
            raise ExportError(f"output folder {out} is not writable: {e.strerror}")

        log(f"vision tower: {vision.num_layers} layers x {vision.hidden_size}, {vision.num_image_tokens} image tokens")
        vis = VisionTower(vision.hidden_size, vision.intermediate_size, vision.num_layers, vision.num_heads,
                          vision.layer_norm_eps, vision.num_channels, vision.image_size, vision.patch_size,
                          text.hidden_size, target_dtype)
        save_module(vis, os.path.join(tmp, "vision.pt"), _vision_source, ckpt.get, ckpt.source_name, ckpt.release)
        del vis
        gc.collect()

        log(f"language model: {text.num_layers} layers x {text.hidden_size}, vocab {text.vocab_size}")
        lang = Gemma2Language(text.vocab_size, text.hidden_size, text.intermediate_size, text.num_layers,
                              text.num_heads, text.num_kv_heads, text.head_dim, text.rms_norm_eps, text.rope_theta,
                              text.query_pre_attn_scalar, text.attn_softcap, text.final_softcap,
                              text.sliding_window, text.sliding, target_dtype)
        save_module(lang, os.path.join(tmp, "language.pt"), _language_source, ckpt.get, ckpt.source_name,
                    ckpt.release)
        del lang
        gc.collect()

        log("VAE mask decoder")
        # The VAE stays float32 whatever --dtype says: it is 4.7 MB, and bfloat16 weights move its masks by
        # ~0.08 (vae-golden.npz is pinned at 1e-4).
        dec = VAEDecoder(torch.float32)
        save_module(dec, os.path.join(tmp, "vae.pt"), _vae_source, lambda k: torch.from_numpy(vae_arrays[k]),
                    lambda k: k)
        del dec

        shutil.copyfile(tok_path, os.path.join(tmp, "tokenizer.json"))

        resample = pre.get("resample", 3)
        manifest = {
            "format_version": FORMAT_VERSION,
            "exporter_version": __version__,
            "source": {"model_id": model_id or cache_id or os.path.basename(folder.rstrip(os.sep)),
                       "revision": revision or cache_rev, "path": os.path.abspath(checkpoint)},
            "dtype": target_name,
            "image": {"size": vision.image_size, "patch_size": vision.patch_size,
                      "num_image_tokens": vision.num_image_tokens,
                      "mean": [float(x) for x in pre.get("image_mean", [0.5, 0.5, 0.5])],
                      "std": [float(x) for x in pre.get("image_std", [0.5, 0.5, 0.5])],
                      "resample": _RESAMPLE.get(resample, str(resample)) if not isinstance(resample, str) else resample,
                      "rescale_factor": float(pre.get("rescale_factor", 1.0 / 255.0))},
            "text": {"vocab_size": text.vocab_size, "hidden_size": text.hidden_size, "num_layers": text.num_layers,
                     "num_heads": text.num_heads, "num_kv_heads": text.num_kv_heads, "head_dim": text.head_dim,
                     "sliding_window": text.sliding_window,
                     "max_position_embeddings": text.max_position_embeddings},
            "vision": {"hidden_size": vision.hidden_size, "num_layers": vision.num_layers,
                       "num_heads": vision.num_heads},
            "tokens": tokens,
            "files": {},
        }
        for fn in ("vision.pt", "vision.safetensors", "language.pt", "language.safetensors", "vae.pt",
                   "vae.safetensors", "tokenizer.json"):
            p = os.path.join(tmp, fn)
            manifest["files"][fn] = {"sha256": _sha256(p), "bytes": os.path.getsize(p)}
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700

        old = None
        if os.path.isdir(out):
            if os.listdir(out):
                old = tempfile.mkdtemp(prefix="." + os.path.basename(out) + ".old-", dir=os.path.dirname(out))
                os.rename(out, os.path.join(old, "bundle"))
            else:
                os.rmdir(out)
        os.rename(tmp, out)
        tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return manifest
    except OSError as e:
        raise ExportError(f"writing the bundle failed: {e.strerror or e}: {e.filename or out}")
    finally:
        ckpt.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
