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
)

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
