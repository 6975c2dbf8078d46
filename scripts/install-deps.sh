#!/usr/bin/env bash
# Installs everything needed to build and test paligemma-serve on Debian 12 (apt-get only).
# Used by .ci/run, the README and the Dockerfile so there is exactly one list of dependencies.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl unzip
  libtorch-dev python3-torch libopenblas0-pthread
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev grpc-proto
  libabsl-dev libcurl4-openssl-dev catch2 libstb-dev nlohmann-json3-dev zlib1g-dev
  python3-numpy python3-requests python3-grpcio python3-pil
)
# Only the tests use these: headless chromium (gateway docs), the Debian base image for the Docker stage,
# linters. PG_DEPS=build (the Dockerfile's build stage) leaves them out.
if [ "${PG_DEPS:-all}" != build ]; then
  packages+=(chromium debootstrap yamllint shellcheck docker-compose)
  packages+=(clang-14 libclang-rt-14-dev)  # libFuzzer + sanitizer runtimes (stage "fuzz", docs/hardening.md)
  packages+=(clang-format-14)  # the C++ style check (stage "delivery-lint")
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The REST gateway (gateway/) needs Go 1.26+, which Debian 12's golang-go (1.19) is not. When /usr/local/go
# (or the first go on PATH) is missing or too old, Go's own release is installed at /usr/local/go from the Go
# module proxy ($GOPROXY, where the `go` command itself fetches toolchains: golang.org/toolchain), checked
# against the SHA-256 pinned here. The gateway's Go modules come from the same proxy at build time.
go_version_wanted=1.26.8
declare -A go_zip_sha256=(
  [amd64]=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
  [arm64]=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
)
go_ok() { # $1: a go binary; true when it is 1.26 or newer
  local v
  v="$("$1" env GOVERSION 2>/dev/null | sed 's/^go//')" || return 1
  [ -n "$v" ] && [ "$(printf '%s\n' 1.26 "$v" | sort -V | head -1)" = 1.26 ]
}
go_bin=""
if [ -x /usr/local/go/bin/go ] && go_ok /usr/local/go/bin/go; then
  go_bin=/usr/local/go/bin/go
elif command -v go >/dev/null && go_ok "$(command -v go)"; then
  go_bin="$(command -v go)"
fi
if [ -z "$go_bin" ]; then
  arch="${TARGETARCH:-$(dpkg --print-architecture)}"
  sha="${go_zip_sha256[$arch]:-}"
  if [ -z "$sha" ]; then
    echo "install-deps: no pinned Go $go_version_wanted for $arch; install Go 1.26+ at /usr/local/go (https://go.dev/dl/)" >&2
    exit 1
  fi
  proxy="${GOPROXY:-https://proxy.golang.org}"
  proxy="${proxy%%[,|]*}"
  [ "$proxy" = direct ] || [ "$proxy" = off ] && proxy=https://proxy.golang.org
  mod="v0.0.1-go$go_version_wanted.linux-$arch"
  echo "install-deps: installing Go $go_version_wanted ($arch) at /usr/local/go from $proxy"
  tmp="$(mktemp -d)"
  curl -fsSL --retry 3 -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/$mod.zip"
  echo "$sha  $tmp/go.zip" | sha256sum -c --quiet -
  unzip -q "$tmp/go.zip" -d "$tmp"
  $SUDO rm -rf /usr/local/go
  $SUDO mv "$tmp/golang.org/toolchain@$mod" /usr/local/go
  rm -rf "$tmp"
  go_bin=/usr/local/go/bin/go
fi
echo "install-deps: Go $("$go_bin" env GOVERSION | sed 's/^go//') at $go_bin"
