#!/usr/bin/env bash
# Creates .venv with the pinned requirements and the edgecast package (editable).
# Downloads are cached by pip outside the clone (~/.cache/pip); an empty cache works too.
# Each step starts with a header giving the seconds since the start, and pip says what it
# collects and installs, a line each, without progress bars (readable in CI logs as on a
# terminal). --quiet prints only errors.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
quiet=
case "${1:-}" in
  "") ;;
  --quiet) quiet=-q ;;
  *) echo "usage: bash scripts/setup.sh [--quiet]" >&2; exit 2 ;;
esac
step() {
  [ -n "$quiet" ] || echo "== setup [${SECONDS} s] $*"
}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $python"
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt app/pyproject.toml tests/harness/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip=(.venv/bin/pip install --disable-pip-version-check --progress-bar off $quiet)
  step "installing the pinned requirements (requirements-dev.txt): minutes with an empty pip cache"
  "${pip[@]}" -r requirements-dev.txt
  step "installing edgecast (app/) and the test harness (tests/harness), editable"
  "${pip[@]}" --no-deps -e app -e tests/harness
  echo "$want" > "$stamp"
  step ".venv is ready"
else
  step ".venv is up to date with the pinned requirements: nothing to install"
fi
