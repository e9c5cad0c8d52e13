#!/usr/bin/env bash
# Sets everything up and runs every check: ruff, ansible-lint (production profile), then the
# test suite (real processes, real models, real containers for the roles' Molecule scenarios).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
export PATH="$root/.venv/bin:$PATH"
ruff check .
ruff format --check .
ansible-lint
exec python -m pytest "$@"
