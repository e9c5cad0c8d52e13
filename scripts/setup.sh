#!/usr/bin/env bash
# Creates .venv with the pinned requirements and the edgecast package (editable).
# Downloads are cached by pip outside the clone (~/.cache/pip); an empty cache works too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-dev.txt app/pyproject.toml tests/harness/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install --disable-pip-version-check -q -r requirements-dev.txt
  .venv/bin/pip install --disable-pip-version-check -q --no-deps -e app -e tests/harness
  echo "$want" > "$stamp"
fi
