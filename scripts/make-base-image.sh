#!/usr/bin/env bash
# Builds the Debian 12 base images the Dockerfile starts FROM (debian:bookworm and debian:bookworm-slim)
# with debootstrap and `docker import`, for machines that cannot pull from a registry. Both tags are the same
# minbase system (Debian's own bookworm-slim is minbase with documentation filtered out).
# The mirror is the one apt uses on this machine (override with PG_DEBIAN_MIRROR).
# Usage: scripts/make-base-image.sh [--force]     (needs root, debootstrap and a Docker engine)
set -euo pipefail

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" -eq 0 ] && docker image inspect debian:bookworm >/dev/null 2>&1 &&
  docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  echo "make-base-image: debian:bookworm and debian:bookworm-slim already exist (--force rebuilds)"
  exit 0
fi

mirror="${PG_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # deb822 sources (URIs: ...) first, then one-line sources (deb URL bookworm main).
  mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources |
    awk '{print $2}' | grep -v security | head -1 || true)"
fi
if [ -z "$mirror" ]; then
  mirror="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    awk '$3 == "bookworm" {print $2}' | head -1 || true)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

command -v debootstrap >/dev/null || {
  echo "make-base-image: debootstrap is missing (apt-get install debootstrap)" >&2
  exit 1
}

dir="$(mktemp -d /tmp/pg-bookworm.XXXXXX)"
# debootstrap mounts proc/sys inside while it runs: unmount before deleting anything.
cleanup() {
  umount -l "$dir/proc" "$dir/sys" 2>/dev/null || true
  rm -rf --one-file-system "$dir" "$dir.log"
}
trap cleanup EXIT
echo "make-base-image: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 || {
  tail -20 "$dir.log" >&2
  exit 1
}
rm -f "$dir.log"
# What Docker's official image does: no apt lists or cache in the image, apt cleans up after itself, and
# dpkg skips fsync (unpacking hundreds of packages on overlay file systems is several times faster).
rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin
echo force-unsafe-io >"$dir/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF2'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF2
cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
tar -C "$dir" --one-file-system -c . | docker import --change 'CMD ["bash"]' - debian:bookworm
docker tag debian:bookworm debian:bookworm-slim
docker image ls debian
