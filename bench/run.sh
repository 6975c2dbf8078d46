#!/usr/bin/env bash
# Benchmark driver: engine in-process, gRPC (build/paligemma-server) and REST (build/paligemma-gateway)
# at several concurrencies, plus the compute/bandwidth/load/RSS ratios; prints a table and writes JSON.
#
#   bench/run.sh                 # tiny fixture model, < 2 min
#   bench/run.sh --3b-224        # random 3B-architecture checkpoint at 224 px, CPU targets (~10-15 min)
#
# Env: BUILD (default build), OUT (default build/bench), PY (default /usr/bin/python3),
#      CONCURRENCY, REQUESTS, NEW_TOKENS, DTYPE, MAX_BATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=${OUT:-$BUILD/bench}
PY=${PY:-/usr/bin/python3}
MODE=tiny
[[ "${1:-}" == "--3b-224" ]] && MODE=3b-224
mkdir -p "$OUT"
for bin in paligemma-bench paligemma-server paligemma-gateway; do
  [[ -x $BUILD/$bin ]] || { echo "bench/run.sh: $BUILD/$bin missing (cmake --build $BUILD)" >&2; exit 2; }
done

# A bundle left by another exporter version is exported again (its format may lack what the engine uses now).
current_bundle() {
  local want
  want=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' exporter/__init__.py)
  [[ -f $1/manifest.json ]] && grep -q "\"exporter_version\": \"$want\"" "$1/manifest.json"
}

if [[ $MODE == tiny ]]; then
  BUNDLE=$OUT/tiny-bundle
  current_bundle "$BUNDLE" || $PY -m exporter tests/fixtures/paligemma2-tiny \
      --vae tests/fixtures/vae/vae-oid-random.npz --out "$BUNDLE" --force --quiet
  CONCURRENCY=${CONCURRENCY:-1,4,8,16}; REQUESTS=${REQUESTS:-32}; NEW_TOKENS=${NEW_TOKENS:-32}
  MICRO=1
else
  CKPT=$OUT/random-3b-224; BUNDLE=$OUT/random-3b-224-bundle-${DTYPE:-float32}
  if [[ ! -f $CKPT/model.safetensors.index.json ]]; then
    /usr/bin/time -v $PY -m exporter --make-random tests/fixtures/paligemma2-3b-448.config.json \
        --image-size 224 --out "$CKPT" --force 2> "$OUT/make-random.log" || { cat "$OUT/make-random.log"; exit 1; }
  fi
  if ! current_bundle "$BUNDLE"; then
    # The exporter's peak RSS is one of the targets (< 1.5 x checkpoint bytes + 1 GB).
    # Exported in the serving dtype (as the server's registry does), so the engine maps the weights
    # in place instead of converting them at load (docs/bundle-format.md).
    /usr/bin/time -v $PY -m exporter "$CKPT" --vae tests/fixtures/vae/vae-oid-random.npz \
        --dtype "${DTYPE:-float32}" --out "$BUNDLE" --force 2> "$OUT/export.log" || { cat "$OUT/export.log"; exit 1; }
    grep -E "Maximum resident|Elapsed" "$OUT/export.log" || true
  fi
  # 3B on 2 cores: ~1 s/token; keep the run inside 15 minutes.
  CONCURRENCY=${CONCURRENCY:-}; REQUESTS=${REQUESTS:-1}; NEW_TOKENS=${NEW_TOKENS:-8}
  MAX_BATCH=${MAX_BATCH:-8}; MAX_CONTEXT=${MAX_CONTEXT:-384}
  MICRO=1
fi
IMAGE=tests/fixtures/images/chelsea.png

MODELS=$(mktemp -d)
cleanup() {
  [[ -n ${GW_PID:-} ]] && kill "$GW_PID" 2>/dev/null || true
  [[ -n ${SRV_PID:-} ]] && kill "$SRV_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$MODELS"
}
trap cleanup EXIT
mkdir -p "$MODELS/bundles"
ln -s "$(realpath "$BUNDLE")" "$MODELS/bundles/bench"

SERVING=()
rm -f "$OUT/server.out" "$OUT/gateway.out"  # never read a previous run's port
if [[ $MODE == tiny ]]; then
  # The server gets the same engine settings as the in-process run (no vision cache: full work per request).
  $BUILD/paligemma-server --host 127.0.0.1 --port 0 --models_dir "$MODELS" --default_model bench --preload \
      --max_batch "${MAX_BATCH:-16}" --max_queue 1024 --vision_cache_mb 0 --max_new_tokens_limit "$NEW_TOKENS" \
      --dtype "${DTYPE:-float32}" > "$OUT/server.out" 2> "$OUT/server.log" &
  SRV_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/server.out" 2>/dev/null && break; sleep 0.1; done
  GRPC=$(sed -n 's/^listening on //p' "$OUT/server.out" | head -1)
  [[ -n $GRPC ]] || { cat "$OUT/server.log"; exit 1; }
  $BUILD/paligemma-gateway --grpc_endpoint "$GRPC" --host 127.0.0.1 --port 0 > "$OUT/gateway.out" 2> "$OUT/gateway.log" &
  GW_PID=$!
  for _ in $(seq 100); do grep -q "listening on" "$OUT/gateway.out" 2>/dev/null && break; sleep 0.1; done
  GW=$(sed -n 's/^listening on //p' "$OUT/gateway.out" | head -1)
  [[ -n $GW ]] || { cat "$OUT/gateway.log"; exit 1; }
  # Wait until the preloaded model answers (health SERVING) by sending one request through the gateway.
  for _ in $(seq 300); do
    curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "http://$GW/healthz" 2>/dev/null | grep -q 200 && break
    sleep 0.2
  done
  SERVING=(--grpc "$GRPC" --gateway "http://$GW")
fi

JSON=$OUT/bench-$MODE.json
$BUILD/paligemma-bench --bundle "$BUNDLE" --image "$IMAGE" --label "$MODE" --json "$JSON" \
    --concurrency "$CONCURRENCY" --requests "$REQUESTS" --max_new_tokens "$NEW_TOKENS" \
    --dtype "${DTYPE:-float32}" --max_batch "${MAX_BATCH:-16}" --max_context "${MAX_CONTEXT:-0}" --micro "$MICRO" "${SERVING[@]}" \
    2> "$OUT/bench-$MODE.log"
