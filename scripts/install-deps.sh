#!/usr/bin/env bash
# Installs everything needed to build and test paligemma-serve on Debian 12 (apt-get only).
# Used by .ci/run, the README and the Dockerfile so there is exactly one list of dependencies.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev python3-torch libopenblas0-pthread
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev grpc-proto
  libabsl-dev libcurl4-openssl-dev catch2 libstb-dev nlohmann-json3-dev
  python3-numpy python3-requests python3-grpcio python3-pil
  chromium
)

# The REST gateway (gateway/) needs Go 1.26+, which Debian 12's golang-go (1.19) is not: it must be at
# /usr/local/go (or first on PATH). Its Go modules come from the Go module proxy at build time.
go_bin=""
if [ -x /usr/local/go/bin/go ]; then go_bin=/usr/local/go/bin/go; elif command -v go >/dev/null; then go_bin="$(command -v go)"; fi
if [ -z "$go_bin" ]; then
  echo "install-deps: Go 1.26 or newer is required at /usr/local/go (https://go.dev/dl/); Debian's golang-go is too old" >&2
  exit 1
fi
go_version="$("$go_bin" env GOVERSION | sed 's/^go//')"
if [ "$(printf '%s\n' 1.26 "$go_version" | sort -V | head -1)" != 1.26 ]; then
  echo "install-deps: $go_bin is Go $go_version; the gateway needs 1.26 or newer at /usr/local/go" >&2
  exit 1
fi
echo "install-deps: Go $go_version at $go_bin"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
