#!/usr/bin/env bash
# Stage "client": paligemma-client's overlay (crafted answers: same size as the input, every pixel inside a
# mask tinted) and a live gRPC call to the server on the tiny model.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHONDONTWRITEBYTECODE=1 PG_BUILD_DIR="${PG_BUILD_DIR:-build}" /usr/bin/python3 -W ignore::ResourceWarning -m unittest -v tests/delivery/test_client.py
