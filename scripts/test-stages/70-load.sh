#!/usr/bin/env bash
# Stage "load": the bounded load test (tests/load/load_test.py) through the REST gateway on 127.0.0.1 with
# the tiny bundle: 32 clients for PG_LOAD_SECONDS (default 60) after a warm-up, valid uploads and image_url
# requests mixed with invalid ones; fails on any error for a valid request, a wrong status for an invalid
# one, any 5xx, or server RSS that does not stay flat. Uses the binaries the main build made in
# $PG_BUILD_DIR (build/); it never builds. The 10-minute run: docs/hardening.md "Load test".
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${PG_BUILD_DIR:-build}"
for f in "$build/paligemma-server" "$build/paligemma-gateway"; do
  [ -x "$f" ] || { echo "load stage: $f is missing; run the main build first (scripts/test.sh does)" >&2; exit 1; }
done
if [ ! -f "$build/tiny-bundle/manifest.json" ]; then  # exported by CTest's fixture; export it the same way
  ctest --test-dir "$build" -R '^export_tiny_bundle$' --output-on-failure >/dev/null
fi
mkdir -p "$build/artifacts"
PG_BUILD_DIR="$build" PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 tests/load/load_test.py \
  --seconds "${PG_LOAD_SECONDS:-60}" --json "$build/artifacts/load-${PG_LOAD_SECONDS:-60}s.json"
