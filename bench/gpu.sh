#!/usr/bin/env bash
# GPU benchmark for a lent H100/H200 machine (DEVELOPERS.md): builds the engine + bench against that
# machine's CUDA LibTorch (the CMake config inside its PyTorch install), makes a random 3B-448
# checkpoint, exports it (bfloat16), and runs our bench AND transformers' generate on the same
# checkpoint in the same run, printing the ratios. Budget: < 10 minutes.
#
# Needs there: python3 with torch (CUDA) + transformers + tokenizers, cmake, a C++ compiler, and this
# project's C++ dependencies (gRPC, absl, nlohmann-json, curl). Note: pip's LibTorch must use the same
# C++ ABI as those libraries (torch >= 2.7 wheels use the new ABI, as Debian's packages do).
#
# NOT YET RUN: the session that wrote it had no GPU lent to it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
OUT=${OUT:-build-cuda/bench}
NEW_TOKENS=${NEW_TOKENS:-32}
mkdir -p "$OUT"
TORCH_PREFIX=$($PY -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DPG_CUDA=ON -DPG_TORCH_PREFIX="$TORCH_PREFIX" \
    -DBUILD_TESTING=OFF -DPG_PYTHON="$(command -v "$PY")" > "$OUT/cmake.log"
cmake --build build-cuda -j"$(nproc)" --target paligemma-bench > "$OUT/build.log"

CKPT=$OUT/random-3b-448
BUNDLE=$OUT/random-3b-448-bundle
[[ -f $CKPT/model.safetensors.index.json ]] || \
  $PY -m exporter --make-random tests/fixtures/paligemma2-3b-448.config.json --out "$CKPT" --force
[[ -f $BUNDLE/manifest.json ]] || \
  $PY -m exporter "$CKPT" --vae tests/fixtures/vae/vae-oid-random.npz --out "$BUNDLE" --dtype bfloat16 --force --quiet

IMAGE=tests/fixtures/images/chelsea.png
build-cuda/paligemma-bench --bundle "$BUNDLE" --image "$IMAGE" --label gpu-3b-448 --device cuda \
    --dtype bfloat16 --max_new_tokens "$NEW_TOKENS" --concurrency 1,8,32 --requests 64 --max_batch 32 \
    --json "$OUT/bench-gpu.json" 2> "$OUT/bench-gpu.log"
$PY bench/hf_generate.py --checkpoint "$CKPT" --new-tokens "$NEW_TOKENS" --batches 1,8,32 \
    --json "$OUT/hf-gpu.json"
$PY - "$OUT/bench-gpu.json" "$OUT/hf-gpu.json" <<'PYEOF'
import json, sys
ours, hf = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
lv = {l["concurrency"]: l for l in ours["levels"] if l["mode"] == "engine"}
print(f"batch 1 end-to-end p50: ours {lv[1]['p50_ms']:.1f} ms, transformers {hf['1']['p50_ms']:.1f} ms "
      f"(ratio {hf['1']['p50_ms'] / lv[1]['p50_ms']:.2f}x; target <= 80 ms)")
print(f"aggregate tok/s at 32: ours {lv[32]['tokens_per_s']:.0f}, transformers {hf['32']['tokens_per_s']:.0f} "
      f"(ratio {lv[32]['tokens_per_s'] / hf['32']['tokens_per_s']:.2f}x; target >= 2000)")
PYEOF
