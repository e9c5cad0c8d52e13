#!/usr/bin/env bash
# Builds a Debian base image from Debian's archive (no registry needed) and imports it into
# Docker as local/debian-<arch>[-systemd]:bookworm. The root filesystem tarball is cached
# outside the clone (EDGECAST_CACHE, default ~/.cache/edgecast), so later runs only import it.
# Usage: base-image.sh ARCH [systemd]      ARCH: amd64 | arm64 | armhf
set -euo pipefail
arch=${1:?usage: base-image.sh ARCH [systemd]}
flavour=${2:-}
suite=bookworm
cache=${EDGECAST_CACHE:-$HOME/.cache/edgecast}/images
packages=python3,python3-venv,python3-pip,ca-certificates,sudo
tag=local/debian-$arch:$suite
if [ "$flavour" = systemd ]; then
  packages=$packages,systemd,systemd-sysv,dbus
  tag=local/debian-$arch-systemd:$suite
fi
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
need=()
if [ "$arch" != amd64 ]; then
  # Foreign-architecture containers run through qemu's binfmt handlers, cache or not.
  need+=(qemu-user-static binfmt-support)
fi
mkdir -p "$cache"
tarball=$cache/debian-$arch${flavour:+-$flavour}-$suite.tar
[ -s "$tarball" ] || need+=(debootstrap)
missing=()
for pkg in "${need[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$arch" != amd64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable >/dev/null 2>&1 || true
fi
if [ ! -s "$tarball" ]; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --arch "$arch" --include="$packages" "$suite" "$root" \
    http://deb.debian.org/debian >/dev/null
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import "$tarball" "$tag" >/dev/null
echo "$tag"
