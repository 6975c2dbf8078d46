#!/usr/bin/env bash
# The no-Docker demo: builds the server and the gateway if needed, exports the tiny test model (random
# weights: the answers are gibberish, every step is real), starts paligemma-server and paligemma-gateway on
# 127.0.0.1 and prints requests to try. Ctrl-C (or SIGTERM) stops both; nothing is left running.
#
#   bash scripts/demo.sh
#
# Environment: PG_DEMO_HTTP_PORT (default 8000) and PG_DEMO_GRPC_PORT (default 50051), 0 = any free port;
# PG_BUILD_DIR (default build); PG_DEMO_DIR (default $PG_BUILD_DIR/demo: models/bundles/tiny, logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
build="${PG_BUILD_DIR:-build}"
[[ "$build" = /* ]] || build="$root/$build"
demo="${PG_DEMO_DIR:-$build/demo}"
http_port="${PG_DEMO_HTTP_PORT:-8000}"
grpc_port="${PG_DEMO_GRPC_PORT:-50051}"
python=/usr/bin/python3

say() { echo "demo: $*"; }

# 1. Build (only what the demo runs) when a binary is missing.
if [ ! -x "$build/paligemma-server" ] || [ ! -x "$build/paligemma-gateway" ]; then
  say "building paligemma-server and paligemma-gateway into $build (first time: several minutes)"
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$build" -j"$(nproc)" --target paligemma-server paligemma-gateway
fi

# 2. Export the tiny fixture once (the exporter is the same one that converts real checkpoints).
bundle="$demo/models/bundles/tiny"
if [ ! -f "$bundle/manifest.json" ]; then
  say "exporting tests/fixtures/paligemma2-tiny to $bundle"
  "$python" -m exporter tests/fixtures/paligemma2-tiny --vae tests/fixtures/vae/vae-oid-random.npz \
    --out "$bundle" --force
fi

# 3. Start both; stop both on exit, whatever the reason.
mkdir -p "$demo"
server_pid=""
gateway_pid=""
# shellcheck disable=SC2317  # invoked by the trap
stop() {
  trap - EXIT INT TERM
  for pid in $gateway_pid $server_pid; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $gateway_pid $server_pid; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$server_pid" ]; then say "stopped"; fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Reads "listening on HOST:PORT" from a log (the programs print it once they listen); echoes PORT.
wait_listening() {
  local log="$1" pid="$2" name="$3"
  for _ in $(seq 1 600); do
    if grep -q '^listening on ' "$log" 2>/dev/null; then
      grep -m1 '^listening on ' "$log" | sed 's/.*://'
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "demo: $name exited; its log ($log):" >&2
      tail -20 "$log" "$demo/$name.err" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "demo: $name did not start within 60 s" >&2
  return 1
}

"$build/paligemma-server" --host 127.0.0.1 --port "$grpc_port" --models_dir "$demo/models" \
  --default_model tiny --preload --hf_token_file= >"$demo/server.out" 2>"$demo/server.err" &
server_pid=$!
grpc_port="$(wait_listening "$demo/server.out" "$server_pid" server)"

"$build/paligemma-gateway" --host 127.0.0.1 --port "$http_port" --grpc_endpoint "127.0.0.1:$grpc_port" \
  >"$demo/gateway.out" 2>"$demo/gateway.err" &
gateway_pid=$!
http_port="$(wait_listening "$demo/gateway.out" "$gateway_pid" gateway)"

# Ready = the server has loaded the model (--preload) and the gateway sees it SERVING.
ready=0
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if [ "$ready" -ne 1 ]; then
  echo "demo: the server did not become ready; its log:" >&2
  tail -20 "$demo/server.err" >&2
  exit 1
fi

cat <<EOF
demo: ready: paligemma-server on 127.0.0.1:$grpc_port (gRPC), paligemma-gateway on http://127.0.0.1:$http_port
demo: model "tiny" (random weights: the answers are gibberish, but every step is real). Try:

  curl -s -F prompt="segment cat" -F image_file=@tests/fixtures/images/chelsea.png http://127.0.0.1:$http_port/segment

  client/paligemma-client tests/fixtures/images/chelsea.png "segment cat" --server 127.0.0.1:$grpc_port --out out/demo
  grpcurl -plaintext 127.0.0.1:$grpc_port list
  open http://127.0.0.1:$http_port/docs (Swagger UI)

demo: logs in $demo/{server,gateway}.err; Ctrl-C stops both.
EOF

# Wait until a signal, or until one of the two dies (then stop the other one too).
while kill -0 "$server_pid" 2>/dev/null && kill -0 "$gateway_pid" 2>/dev/null; do
  sleep 0.5
done
echo "demo: a process exited unexpectedly; see $demo/*.err" >&2
exit 1
