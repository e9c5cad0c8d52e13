#!/usr/bin/env bash
# Builds a Debian base image from Debian's archive (no registry needed) and imports it into
# Docker as local/debian-<arch>[-<flavour>]:bookworm. The root filesystem tarball is cached
# outside the clone (EDGECAST_CACHE, default ~/.cache/edgecast), so later runs only import it.
# Usage: base-image.sh ARCH [slim|systemd|docker|nopython|ubuntu-bionic]   ARCH: amd64 | arm64 | armhf
# Flavours: slim is the plain root trimmed as Docker's Debian -slim images are (no apt lists or
# caches, no documentation but the copyright files, no man pages, no translations) and its Python
# as python:3.11-slim-bookworm's (no bytecode, no test suites), the stand-in for that image
# wherever an image's size is measured; its tarball and image carry the digest of the trimming
# (trim_slim below), so a changed trimming is rebuilt, not taken from the cache; systemd boots /sbin/init;
# docker is systemd with Debian's Docker Engine (docker.io, without Recommends) already installed, for the Molecule nodes that need an engine but do not
# test its installation (docker_engine's own scenario installs it for real). nopython has no
# Python at all, as a host before playbooks/bootstrap-python.yml gave it one. ubuntu-bionic is
# Ubuntu 18.04 from Ubuntu's archive (UBUNTU_MIRROR, default archive.ubuntu.com for amd64,
# ports.ubuntu.com for arm64), the userland of JetPack 4 with its Python 3.6, imported as
# local/ubuntu-<arch>:bionic; its sources list only bionic main, as debootstrap leaves them.
# EDGECAST_BASE_IMAGE_NO_IMPORT=1 only makes the cached tarball (Docker need not be running).
# The packages come from the Debian mirror this machine's apt uses (DEBIAN_MIRROR overrides it).
# Safe to run concurrently: one lock per image, and one for the host's apt.
set -euo pipefail
arch=${1:?usage: base-image.sh ARCH [slim|systemd|docker|nopython|ubuntu-bionic]}
flavour=${2:-}
suite=bookworm
distribution=debian
cache=${EDGECAST_CACHE:-$HOME/.cache/edgecast}/images
packages=python3,python3-venv,python3-pip,ca-certificates,sudo
case $flavour in
  '' | slim) ;;
  systemd) packages=$packages,systemd,systemd-sysv,dbus ;;
  docker) packages=$packages,systemd,systemd-sysv,dbus,docker.io,iptables ;;
  nopython) packages=ca-certificates,sudo ;;
  ubuntu-bionic)
    distribution=ubuntu suite=bionic flavour=''
    packages=python3,ca-certificates,sudo
    ;;
  *) echo "base-image.sh: unknown flavour $flavour (slim, systemd, docker, nopython or ubuntu-bionic)" >&2; exit 2 ;;
esac
tag=local/$distribution-$arch${flavour:+-$flavour}:$suite
no_import=${EDGECAST_BASE_IMAGE_NO_IMPORT:-0}
mkdir -p "$cache"
# What the slim flavour removes from the plain root ($1): the files Docker's Debian -slim images
# leave out, and what python:3.11-slim-bookworm removes from its Python (every .pyc and the test
# suites: it keeps the sources only).
trim_slim() {
  rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/man \
    "$1"/usr/share/info "$1"/usr/share/lintian
  find "$1/usr/share/doc" -mindepth 1 -type f ! -name copyright -delete
  find "$1/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$1/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  find "$1"/usr/lib/python3* -depth \
    \( \( -type d \( -name __pycache__ -o -name test -o -name tests -o -name idle_test \) \) \
    -o \( -type f \( -name '*.pyc' -o -name '*.pyo' \) \) \) -exec rm -rf {} +
}
# The recipe's digest names the cached tarball and labels the image (slim only).
recipe=''
[ "$flavour" != slim ] || recipe=$(declare -f trim_slim | sha256sum | cut -c1-12)
tarball=$cache/$distribution-$arch${flavour:+-$flavour}${recipe:+-$recipe}-$suite.tar
# The image's platform as Docker names it: `docker run/build --platform linux/arm64` finds the
# arm64 image locally only when its configuration says arm64.
case $arch in
  amd64) platform_arch=amd64 platform_variant='' ;;
  arm64) platform_arch=arm64 platform_variant=v8 ;;
  armhf) platform_arch=arm platform_variant=v7 ;;
  *) echo "base-image.sh: unknown architecture $arch (amd64, arm64 or armhf)" >&2; exit 2 ;;
esac
already_there() {
  if [ "$no_import" = 1 ]; then
    [ -s "$tarball" ]
  else
    [ "$(docker image inspect --format \
      '{{.Architecture}} {{index .Config.Labels "io.edgecast.recipe"}}' "$tag" 2>/dev/null)" \
      = "$platform_arch $recipe" ]
  fi
}
# `docker import` records the daemon's own architecture (its --platform needs an experimental
# daemon), so a foreign image's configuration is rewritten with its real platform and loaded again.
set_platform() {
  local work
  work=$(mktemp -d)
  docker save "$tag" | tar -x -C "$work"
  python3 - "$work" "$tag" "$platform_arch" "$platform_variant" <<'PY'
import hashlib, json, os, sys
work, tag, arch, variant = sys.argv[1:]
manifest = json.load(open(os.path.join(work, "manifest.json")))
old = manifest[0]["Config"]
config = json.load(open(os.path.join(work, old)))
config["architecture"] = arch
if variant:
    config["variant"] = variant
data = json.dumps(config, separators=(",", ":")).encode()
name = hashlib.sha256(data).hexdigest() + ".json"
open(os.path.join(work, name), "wb").write(data)
os.remove(os.path.join(work, old))
manifest[0]["Config"], manifest[0]["RepoTags"] = name, [tag]
json.dump(manifest, open(os.path.join(work, "manifest.json"), "w"))
os.remove(os.path.join(work, "repositories"))
PY
  tar -C "$work" -c . | docker load >/dev/null
  rm -rf "$work"
}
if already_there; then
  echo "$tag"
  exit 0
fi
# One process per image at a time; the others wait, then find the tarball (or the image).
exec 8>"$tarball.lock"
flock 8
if already_there; then
  echo "$tag"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
need=()
if [ "$arch" != amd64 ]; then
  # Foreign-architecture containers run through qemu's binfmt handlers, cache or not.
  need+=(qemu-user-static binfmt-support)
fi
[ -s "$tarball" ] || [ "$flavour" = slim ] || need+=(debootstrap)
[ -s "$tarball" ] || [ "$distribution" != ubuntu ] || need+=(curl)
missing=()
for pkg in "${need[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  # The host's apt, shared with tests/infra/cluster/cluster.sh and other images' builds.
  flock /var/lock/edgecast-apt.lock sh -c 'apt-get update -qq && apt-get install -y -qq "$@" >/dev/null' \
    apt "${missing[@]}"
fi
if [ "$arch" != amd64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable >/dev/null 2>&1 || true
fi
# The first Debian archive URI of the host's apt sources (deb822 or one-line style) that is not
# the security archive: a site with its own mirror uses it here too.
apt_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' |
    grep -v -- '-security' | head -n 1 || true)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' |
      grep -v -- '-security' | head -n 1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
# Ubuntu's archive keys for debootstrap, from the ubuntu-keyring package of Ubuntu 18.04 (Debian
# 12 ships none). The package is pinned by its sha256; it holds the archive signing keys
# 790BC7277767219C42C86F933B4FE6ACC0B21F32 (2012) and F6ECB3762474EDA9D21B7022871920D1991BC93C (2018).
ubuntu_keyring() {
  local deb=$cache/ubuntu-keyring_2018.09.18.1~18.04.2_all.deb
  local sha256=5d8609563fb3074026b254d7d5248f90d393c7dbafcac48916f333bf3c90fed9
  if ! echo "$sha256  $deb" | sha256sum --check --status 2>/dev/null; then
    curl -fsS --retry 3 -o "$deb.tmp" \
      "$1/pool/main/u/ubuntu-keyring/ubuntu-keyring_2018.09.18.1~18.04.2_all.deb"
    echo "$sha256  $deb.tmp" | sha256sum --check --status ||
      { echo "base-image.sh: ubuntu-keyring from $1 does not match its pinned sha256" >&2; exit 1; }
    mv "$deb.tmp" "$deb"
  fi
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/keyrings/ubuntu-archive-keyring.gpg \
    >"$cache/ubuntu-archive-keyring.gpg"
  echo "$cache/ubuntu-archive-keyring.gpg"
}
if [ ! -s "$tarball" ]; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  if [ "$flavour" = slim ]; then
    # The plain root (made first if need be), trimmed: no second debootstrap.
    EDGECAST_BASE_IMAGE_NO_IMPORT=1 bash "$0" "$arch" >/dev/null
    tar -C "$root" -xf "$cache/$distribution-$arch-$suite.tar"
    trim_slim "$root"
  elif [ "$distribution" = ubuntu ]; then
    default_mirror=http://archive.ubuntu.com/ubuntu
    [ "$arch" = amd64 ] || default_mirror=http://ports.ubuntu.com/ubuntu-ports
    mirror=${UBUNTU_MIRROR:-$default_mirror}
    keyring=$(ubuntu_keyring "$mirror")
    debootstrap --variant=minbase --arch "$arch" --include="$packages" --keyring "$keyring" \
      "$suite" "$root" "$mirror" >/dev/null
  else
    mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
    debootstrap --variant=minbase --arch "$arch" --include="$packages" "$suite" "$root" \
      "$mirror" >/dev/null
  fi
  tar -C "$root" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
if [ "$no_import" != 1 ]; then
  docker import ${recipe:+--change "LABEL io.edgecast.recipe=$recipe"} "$tarball" "$tag" >/dev/null
  [ "$platform_arch" = amd64 ] || set_platform
fi
echo "$tag"
