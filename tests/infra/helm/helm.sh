#!/usr/bin/env bash
# Builds the Helm 3 command from its Go module (helm.sh/helm/v3, pinned in go.mod beside this
# file) and prints the binary's path. No download site is needed: the modules come from the Go
# module proxy, like the test cluster's. The binary is cached by the content of go.mod and
# go.sum under $EDGECAST_CACHE/helm (default ~/.cache/edgecast), so a warm run does not rebuild;
# a build from an empty cache takes a few minutes on 2 cores.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${EDGECAST_CACHE:-$HOME/.cache/edgecast}
version=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' "$here/go.mod")
[ -n "$version" ] || { echo "helm.sh: go.mod does not require helm.sh/helm/v3" >&2; exit 1; }
key=$(cat "$here/go.mod" "$here/go.sum" "$here/tools.go" | sha256sum | cut -c1-16)
out="$cache_root/helm/$version-$key"

if [ ! -x "$out/helm" ]; then
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
  fi
  command -v go >/dev/null || { echo "helm.sh: Go is needed to build Helm" >&2; exit 1; }
  mkdir -p "$cache_root/helm"
  # One build at a time (parallel test processes, a person and CI).
  exec 9>"$cache_root/helm/.build.lock"
  flock 9
  if [ ! -x "$out/helm" ]; then
    export GOMODCACHE="$cache_root/go/mod" GOCACHE="$cache_root/go/build"
    export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
    tmp=$(mktemp -d "$cache_root/helm/.build.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    echo "helm.sh: building Helm $version from its Go module (minutes with an empty cache)" >&2
    (cd "$here" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
      -o "$tmp/helm" helm.sh/helm/v3/cmd/helm)
    mkdir -p "$out"
    mv "$tmp/helm" "$out/helm"
  fi
fi
echo "$out/helm"
