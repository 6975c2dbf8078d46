#!/usr/bin/env bash
# Stage "docker": the real image and compose stack, built and run on this machine's Docker engine.
#  1. the Debian base images exist (scripts/make-base-image.sh: debootstrap + docker import; with
#     PG_PULL_BASE=1, e.g. on GitHub's runners, `docker pull` instead);
#  2. the image builds from the repository's Dockerfile, unchanged (docker build --network host);
#  3. the image's own exporter exports the tiny fixture; `compose up` with compose.tiny.yaml (MODEL_ID=tiny,
#     no token) answers the original README's POST /segment (a file upload) through the gateway container;
#  4. scaled to two server replicas, stopping one keeps /segment answering;
#  5. every container runs as a non-root user;
#  6. `compose down` leaves no container, network or volume of the project behind (also on failure: trap).
# Only 127.0.0.1 and the project's own network are used. Skip with PG_SKIP_STAGES=docker.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$(pwd)"
image="${PG_TEST_IMAGE:-paligemma-serve:test}"
project="pgtest$$"
tmp="$(mktemp -d)"
log() { echo "docker stage: $*"; }
fail() { echo "docker stage: FAILED: $*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
compose_env=(env PG_IMAGE="$image" PG_BUNDLES_DIR="$tmp/bundles" PG_HTTP_ADDR=127.0.0.1)
dc() { "${compose_env[@]}" PG_HTTP_PORT="$port" timeout 300 "${compose[@]}" -p "$project" \
  -f compose.yaml -f compose.tiny.yaml "$@"; }

cleanup() {
  local rc=$?
  if [ -n "${port:-}" ]; then
    if [ "$rc" -ne 0 ]; then
      echo "--- compose logs (last lines):" >&2
      dc logs --no-color --tail 30 >&2 2>&1 || true
    fi
    dc down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if ! docker info >/dev/null 2>&1; then
  # CI machines have an engine: there its absence is a failure. Elsewhere the stage is reported as
  # skipped (scripts/test.sh does not count it as passed).
  [ "${CI:-}" = true ] && fail "no Docker engine (docker info failed)"
  echo "docker stage: no Docker engine here (docker info failed): skipped; install docker.io to run it" >&2
  trap - EXIT
  exit 77
fi
log "compose: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || true))"

# 1. Base images.
if ! docker image inspect debian:bookworm >/dev/null 2>&1 || ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  if [ "${PG_PULL_BASE:-0}" = 1 ]; then
    docker pull -q debian:bookworm && docker pull -q debian:bookworm-slim
  else
    log "making the Debian base images with debootstrap"
    bash scripts/make-base-image.sh
  fi
fi

# 2. The image, from the Dockerfile as it is. This machine's own extra CA certificates (a TLS-intercepting
# proxy in front of the Go module proxy, say) are passed in as the Dockerfile's EXTRA_CA_CERTS build argument.
build_args=()
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  build_args+=(--build-arg "EXTRA_CA_CERTS=$(cat /usr/local/share/ca-certificates/*.crt)")
fi
start=$SECONDS
if [ "${PG_DOCKER_REUSE_IMAGE:-0}" = 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  log "PG_DOCKER_REUSE_IMAGE=1: using the existing $image without building (development only)"
else
  log "docker build --network host -t $image . (a first build compiles everything: ~35 min on 2 busy cores)"
  timeout "${PG_DOCKER_BUILD_TIMEOUT:-3600}" docker build --network host "${build_args[@]}" -t "$image" . \
    >"$tmp/build.log" 2>&1 || {
    tail -40 "$tmp/build.log" >&2
    fail "docker build"
  }
  log "built in $((SECONDS - start)) s"
fi
log "image $image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}')"

# 3. The tiny bundle, exported by the image's exporter as the caller's user, then the stack.
mkdir -p "$tmp/bundles"
docker run --rm --network none --read-only --tmpfs /tmp --user "$(id -u):$(id -g)" -v "$root/tests/fixtures:/fixtures:ro" \
  -v "$tmp/bundles:/bundles" "$image" python3 -m exporter /fixtures/paligemma2-tiny \
  --vae /fixtures/vae/vae-oid-random.npz --out /bundles/tiny >"$tmp/export.log" 2>&1 || {
  cat "$tmp/export.log" >&2
  fail "export of the tiny fixture inside the image"
}
port="$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
url="http://127.0.0.1:$port"
start=$SECONDS
dc config -q || fail "compose config"
dc up -d --no-build || fail "compose up"
wait_ready() {
  for _ in $(seq 1 120); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && return 0
    sleep 1
  done
  fail "the gateway at $url is not ready after 120 s"
}
wait_ready
log "stack up and ready in $((SECONDS - start)) s (gateway at $url)"

# The original README's request: a multipart upload with prompt + image_file, via requests.
segment() { # $1: extra form fields as JSON; prints a one-line summary, fails on anything but 200 + masks[]
  /usr/bin/python3 - "$url" "$1" <<'PY'
import json, sys, requests
url, extra = sys.argv[1], json.loads(sys.argv[2])
with open("tests/fixtures/images/chelsea.png", "rb") as f:
    files = {"image_file": ("chelsea.png", f, "image/png")}
    r = requests.post(url + "/segment", files=files, data={"prompt": "segment left wheel", **extra}, timeout=240)
assert r.status_code == 200, (r.status_code, r.text[:300])
doc = r.json()
assert isinstance(doc["masks"], list) and doc["image"] and doc["model_id"] == "tiny", str(doc)[:300]
print(f"200, {len(doc['masks'])} masks, model {doc['model_id']}, {doc['timings']['total_ms']:.0f} ms")
PY
}
out="$(segment '{}')" || fail "/segment through the gateway"
log "POST /segment (the original README's request): $out"

# 5. Non-root: PID 1 (tini) and its child run as the image's user, in every container.
check_users() {
  local c uid
  for c in $(dc ps -q); do
    uid="$(docker exec "$c" sh -c 'cat /proc/1/status /proc/[0-9]*/status 2>/dev/null | awk "/^Uid:/ {print \$2}" | sort -u | tr "\n" " "')"
    [ -n "$uid" ] || fail "cannot read the users of $c"
    case " $uid " in *" 0 "*) fail "container $c runs a process as root (uids: $uid)" ;; esac
    log "container $(docker inspect -f '{{.Name}}' "$c") runs as uid(s) $uid"
  done
}

# 5b. Read-only root filesystem: the image's own files cannot be changed, /tmp and the model volume can.
check_read_only() {
  local c
  for c in $(dc ps -q); do
    [ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$c")" = true ] || fail "$c: root filesystem is writable"
    docker exec "$c" sh -c 'touch /app/pg-write-test' 2>/dev/null && fail "$c: wrote to /app on the root filesystem"
    docker exec "$c" sh -c 'touch /usr/local/bin/pg-write-test' 2>/dev/null && fail "$c: wrote to /usr/local/bin"
    docker exec "$c" sh -c 'touch /tmp/pg-write-test && rm /tmp/pg-write-test' || fail "$c: /tmp is not writable"
  done
  c="$(dc ps -q server | head -1)"
  docker exec "$c" sh -c 'touch /app/models/huggingface/pg-write-test && rm /app/models/huggingface/pg-write-test' ||
    fail "the server cannot write its Hugging Face cache volume"
  log "every container has a read-only root filesystem; /tmp and the model volume are writable"
}
check_read_only
check_users

# 4a. Scaling a running stack up: the new replica gets traffic without restarting the gateway. The servers
# send GOAWAY after MAX_CONNECTION_AGE_S (5 s in compose.tiny.yaml), the gateway reconnects and re-resolves
# `server` (gRPC's DNS resolver waits at least 30 s between resolutions), then round robin connects to every
# address. Proof: an established TCP connection from outside the container to the new replica's port 50051
# (its /proc/net/tcp: local port C383, state 01), and requests still answering meanwhile.
start=$SECONDS
first="$(dc ps -q server)"
dc up -d --no-build --no-recreate --scale server=2 server >/dev/null 2>&1 || fail "compose up --scale server=2 (running stack)"
new="$(dc ps -q server | grep -v "$first" | head -1)"
[ -n "$new" ] || fail "no second server replica after scaling up"
connected=0
for _ in $(seq 1 60); do
  # Not from 127.0.0.1 (0100007F): the container's own healthcheck also connects to :50051.
  if docker exec "$new" awk 'NR > 1 && $2 ~ /:C383$/ && $3 !~ /^0100007F:/ && $4 == "01" {found = 1} END {exit !found}' /proc/net/tcp 2>/dev/null; then
    connected=1
    break
  fi
  segment '{"max_new_tokens": "4"}' >/dev/null || fail "/segment while scaling up"
  sleep 2
done
[ "$connected" = 1 ] || fail "the gateway did not connect to the replica added to the running stack within ~3 min"
log "scaled a running stack to 2 replicas: the gateway connected to the new one after $((SECONDS - start)) s, no restart"

dc down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || fail "compose down"

# 4. Two server replicas behind the gateway (`up --scale server=2`: the gateway resolves both addresses when it
# starts); stop one; /segment keeps answering.
start=$SECONDS
dc up -d --no-build --scale server=2 || fail "compose up --scale server=2"
mapfile -t servers < <(dc ps -q server)
[ "${#servers[@]}" -eq 2 ] || fail "expected 2 server replicas, got ${#servers[@]}"
wait_ready
log "2 replicas up and ready in $((SECONDS - start)) s"
check_users
for i in 1 2 3 4; do
  out="$(segment '{"max_new_tokens": "8"}')" || fail "/segment with 2 replicas"
  log "2 replicas, request $i: $out"
done
docker stop -t 10 "${servers[0]}" >/dev/null
log "stopped replica $(docker inspect -f '{{.Name}}' "${servers[0]}")"
for i in 1 2 3 4 5 6; do
  out="$(segment '{"max_new_tokens": "8"}')" || fail "/segment after stopping a replica"
  log "1 of 2 replicas left, request $i: $out"
done

# 6. down leaves nothing.
dc down -v --remove-orphans --timeout 20 >/dev/null 2>&1 || fail "compose down"
left="$(docker ps -aq --filter "label=com.docker.compose.project=$project")"
[ -z "$left" ] || fail "containers left after down: $left"
[ -z "$(docker network ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "networks left after down"
[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$project")" ] || fail "volumes left after down"
port=""
log "ok: compose down left no container, network or volume of $project"
