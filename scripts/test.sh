#!/usr/bin/env bash
# Sets everything up and runs every check: ruff, ansible-lint (production profile), then the
# test suite (real processes, real models, real containers for the roles' Molecule scenarios).
#
# With no arguments the tiers run as two pytest processes side by side: unit, process and
# container (mostly CPU: training, predictors, image builds) beside molecule, fleet and cluster
# (mostly waiting: apt in containers, SSH round trips, Kubernetes reconciling). The second's
# output is printed when both have ended. EDGECAST_TEST_PARALLEL=0 runs them as one process;
# arguments are passed to one pytest process as they are (e.g. `-m unit`).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
export PATH="$root/.venv/bin:$PATH"
ruff check .
ruff format --check .
ansible-lint
if [ "$#" -gt 0 ] || [ "${EDGECAST_TEST_PARALLEL:-1}" = 0 ]; then
  exec python -m pytest "$@"
fi

log=$(mktemp "${TMPDIR:-/tmp}/edgecast-tests-infra.XXXXXX")
trap 'rm -f "$log"' EXIT
started=$SECONDS
python -m pytest -m "molecule or fleet or cluster" >"$log" 2>&1 &
infra=$!
echo "molecule, fleet and cluster tiers: running beside these (pid $infra), printed when done"
status=0
python -m pytest -m "unit or process or container" || status=$?
echo "unit, process and container tiers ended after $((SECONDS - started)) s (status $status)"
infra_status=0
wait "$infra" || infra_status=$?
echo
echo "================ molecule, fleet and cluster tiers (status $infra_status) ================"
cat "$log"
echo "all tiers ended after $((SECONDS - started)) s"
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
exit "$infra_status"
