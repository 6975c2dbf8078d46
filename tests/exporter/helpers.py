"""Shared helpers for the exporter tests: fixture paths, in-process / CLI exports, checkpoint variants."""

import json
import os
import shutil
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
TINY = os.path.join(FIXTURES, "paligemma2-tiny")
VAE_RANDOM = os.path.join(FIXTURES, "vae", "vae-oid-random.npz")
VAE_GOLDEN = os.path.join(FIXTURES, "vae", "vae-golden.npz")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

if REPO not in sys.path:
    sys.path.insert(0, REPO)

from exporter.export import export  # noqa: E402
from exporter.safetensors_io import SafetensorsFile, save_file  # noqa: E402
from exporter.bundle import load_module  # noqa: E402

SMALL_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"]


def golden():
    with open(os.path.join(TINY, "golden.json")) as f:
        return json.load(f)["cases"][0]


def export_tiny(out, checkpoint=TINY, **kw):
    kw.setdefault("force", True)
    return export(checkpoint, VAE_RANDOM, out, **kw)


def run_cli(*args, cwd=REPO):
    """Run `python3 -m exporter ARGS` the way users do; returns CompletedProcess (text)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([PYTHON, "-m", "exporter", *args, "--quiet"], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


def read_tiny_tensors():
    """All tensors of the tiny checkpoint (copied out of the mmap), by their hub names."""
    with open(os.path.join(TINY, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    out = {}
    for fn in files:
        st = SafetensorsFile(os.path.join(TINY, fn))
        for k in st.keys():
            out[k] = st.get(k).clone()
        st.close()
    return out


def new_style_name(name):
    for old, new in (("language_model.model.", "model.language_model."),
                     ("vision_tower.", "model.vision_tower."),
                     ("multi_modal_projector.", "model.multi_modal_projector.")):
        if name.startswith(old):
            return new + name[len(old):]
    return name


def make_variant(dst, dtype=None, new_names=False, sharded=False, config_edit=None, drop=(), replace=None,
                 link_small=False):
    """Write a copy of the tiny checkpoint to dst: single-file unless sharded, optionally converted to dtype,
    with transformers-5 names, a config edited by config_edit(cfg), tensors dropped or replaced."""
    os.makedirs(dst, exist_ok=True)
    tensors = read_tiny_tensors()
    for k in drop:
        del tensors[k]
    for k, v in (replace or {}).items():
        tensors[k] = v
    if dtype is not None:
        tensors = {k: v.to(dtype) for k, v in tensors.items()}
    if new_names:
        tensors = {new_style_name(k): v for k, v in tensors.items()}
        tensors["lm_head.weight"] = tensors["model.language_model.embed_tokens.weight"]
    if sharded:
        names = sorted(tensors)
        half = {n: ("model-00001-of-00002.safetensors" if i % 2 == 0 else "model-00002-of-00002.safetensors")
                for i, n in enumerate(names)}
        for fn in sorted(set(half.values())):
            save_file({n: tensors[n] for n in names if half[n] == fn}, os.path.join(dst, fn))
        with open(os.path.join(dst, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": half}, f)
    else:
        save_file(tensors, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    for fn in SMALL_FILES:
        src = os.path.join(TINY, fn)
        if link_small and fn == "tokenizer.json":
            os.symlink(src, os.path.join(dst, fn))
        else:
            shutil.copyfile(src, os.path.join(dst, fn))
    if config_edit is not None:
        p = os.path.join(dst, "config.json")
        with open(p) as f:
            cfg = json.load(f)
        config_edit(cfg)
        with open(p, "w") as f:
            json.dump(cfg, f)
    return dst


def load_bundle(path, dtype=torch.float32):
    vis = load_module(path, "vision").to(dtype)
    lang = load_module(path, "language").to(dtype)
    vae = load_module(path, "vae").to(dtype)
    return vis, lang, vae


def new_cache(lang_manifest, slots, maxlen, dtype=torch.float32, fill=0.0):
    t = lang_manifest["text"]
    shape = (t["num_layers"], slots, t["num_kv_heads"], maxlen, t["head_dim"])
    return torch.full(shape, fill, dtype=dtype), torch.full(shape, fill, dtype=dtype)


def read_manifest(path):
    with open(os.path.join(path, "manifest.json")) as f:
        return json.load(f)


def prefix_logits(bundle_path, dtype=torch.float32):
    """Projector output and last-position logits of the golden prompt for a bundle (quick variant check)."""
    g = golden()
    vis, lang, _ = load_bundle(bundle_path, dtype)
    m = read_manifest(bundle_path)
    with torch.no_grad():
        feats = vis(torch.tensor(g["pixel_values"], dtype=dtype).view(1, 3, 56, 56))
        ids = torch.tensor(g["input_ids"][16:]).view(1, -1)
        kc, vc = new_cache(m, 1, 64, dtype)
        h = lang.prefill(feats, lang.embed(ids), torch.tensor([ids.shape[1]]), torch.tensor([0]), kc, vc)
        return feats, lang.logits(h[:, -1])
