#!/usr/bin/env bash
# The main job on the embedded default: `ansible-playbook site.yml` with inventory/local trains a
# model on the shipped data (unless one exists in var/models), starts the predictor on
# 127.0.0.1 as a background service and prints a real forecast from it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
export PATH="$root/.venv/bin:$PATH"
port=${EDGECAST_PORT:-8080}
echo "== ansible-playbook site.yml: trains a model unless var/models holds one (a minute or two;"
echo "   each task's output, the training's epochs among them, is shown when the task ends),"
echo "   then serves it on 127.0.0.1:$port"
ansible-playbook site.yml -e "local_runtime_port=$port" \
  -e "local_runtime_runtime=${EDGECAST_RUNTIME:-keras}" "$@"
cat <<EOT
== the predictor keeps running on http://127.0.0.1:$port (pid file var/run/predictor.pid,
   log var/run/predictor.log). Query it yourself:
  .venv/bin/edgecast query --url http://127.0.0.1:$port --building b13
  curl -s http://127.0.0.1:$port/v1/model
  curl -s http://127.0.0.1:$port/metrics
  curl -s -H 'Content-Type: application/json' http://127.0.0.1:$port/v1/predict \\
       -d '{"loads": [600 hourly kWh values], "last_timestamp": "2017-12-31T23:00:00Z"}'
Stop it with: .venv/bin/edgecast service stop --pid-file var/run/predictor.pid
EOT
