#!/usr/bin/env bash
# Stage "demo": runs the no-Docker demo as the README says (bash scripts/demo.sh; free ports so that it can
# run beside anything else), runs the curl it prints, checks the answer, stops the demo with SIGINT (Ctrl-C)
# and checks that the server and the gateway are gone.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$(mktemp -d)"
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$out"
}
trap cleanup EXIT
fail() { echo "demo stage: $*" >&2; echo "--- demo output:" >&2; cat "$out/demo.out" >&2 || true; exit 1; }

# Job control: the demo gets its own process group with SIGINT not ignored, like a command typed in a
# terminal, so that Ctrl-C can be sent the way a terminal sends it (to the group).
set -m
PG_DEMO_HTTP_PORT=0 PG_DEMO_GRPC_PORT=0 PG_DEMO_DIR="$out/demo" bash scripts/demo.sh >"$out/demo.out" 2>&1 &
demo_pid=$!
set +m
for _ in $(seq 1 600); do
  grep -q '^demo: ready' "$out/demo.out" && break
  kill -0 "$demo_pid" 2>/dev/null || fail "the demo exited before it was ready"
  sleep 0.5
done
grep -q '^demo: ready' "$out/demo.out" || fail "not ready within 5 minutes"
# The demo's children (server, gateway), from /proc (no procps in minimal containers).
children="$(grep -l "^PPid:[[:space:]]*$demo_pid\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 | tr '\n' ' ')"

# The curl the demo printed, exactly as printed (it names a file relative to the repository root).
cmd="$(grep -m1 '^  curl ' "$out/demo.out" | sed 's/^  //')"
[ -n "$cmd" ] || fail "no curl command printed"
echo "demo stage: $cmd"
eval "$cmd" >"$out/answer.json" || fail "the curl failed"
/usr/bin/python3 - "$out/answer.json" <<'PY' || fail "bad answer: $(head -c 300 "$out/answer.json")"
import base64, io, json, sys
from PIL import Image
doc = json.load(open(sys.argv[1]))
assert isinstance(doc["masks"], list), doc
img = Image.open(io.BytesIO(base64.b64decode(doc["image"])))
assert img.size[0] > 0 and doc["model_id"] == "tiny", doc.get("model_id")
print(f"demo stage: answer ok: model {doc['model_id']}, image {img.size}, {len(doc['masks'])} masks, text {doc['text']!r}")
PY
curl -fsS "$(grep -o 'http://127.0.0.1:[0-9]*' "$out/demo.out" | head -1)/" | grep -q Welcome || fail "GET / failed"

# Ctrl-C: SIGINT to the demo's process group stops both programs; nothing is left behind.
kill -INT -- "-$demo_pid"
for _ in $(seq 1 300); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$demo_pid" 2>/dev/null && fail "the demo did not stop within 30 s of SIGINT"
wait "$demo_pid" 2>/dev/null || true
for pid in $children; do
  if kill -0 "$pid" 2>/dev/null && ! grep -q '^sleep' "/proc/$pid/cmdline" 2>/dev/null; then
    fail "process $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline")) is still running after the demo stopped"
  fi
done
grep -q '^demo: stopped' "$out/demo.out" || fail "no 'stopped' message"
echo "demo stage: ok (stopped cleanly; children were: $children)"
