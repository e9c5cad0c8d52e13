#!/usr/bin/env bash
# The main job on the embedded default: train on the shipped data if the model store is empty,
# start the predictor on 127.0.0.1 in the background, and print a real forecast from it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
store=var/models
port=${EDGECAST_PORT:-8080}
runtime=${EDGECAST_RUNTIME:-keras}
mkdir -p var
if [ -z "$(ls -A "$store" 2>/dev/null)" ]; then
  echo "== training a model on building b13 (shipped data) into $store"
  .venv/bin/edgecast train --building b13 --out "$store"
fi
if [ -f var/predictor.pid ] && kill -0 "$(cat var/predictor.pid)" 2>/dev/null; then
  echo "== stopping the previous predictor (pid $(cat var/predictor.pid))"
  kill -TERM "$(cat var/predictor.pid)"
  while kill -0 "$(cat var/predictor.pid)" 2>/dev/null; do sleep 0.2; done
fi
echo "== starting the predictor on http://127.0.0.1:$port (runtime $runtime, log var/predictor.log)"
nohup .venv/bin/edgecast serve --store "$store" --runtime "$runtime" --port "$port" \
  >var/predictor.log 2>&1 &
echo $! > var/predictor.pid
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$(cat var/predictor.pid)" 2>/dev/null; then cat var/predictor.log; exit 1; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz"; echo
echo "== a forecast for the 24 hours after the shipped data ends"
.venv/bin/edgecast query --url "http://127.0.0.1:$port" --building b13
cat <<EOT
== the predictor keeps running (pid $(cat var/predictor.pid)). Query it yourself:
  .venv/bin/edgecast query --url http://127.0.0.1:$port --building b13
  curl -s http://127.0.0.1:$port/v1/model
  curl -s http://127.0.0.1:$port/metrics
  curl -s -H 'Content-Type: application/json' http://127.0.0.1:$port/v1/predict \\
       -d '{"loads": [600 hourly kWh values], "last_timestamp": "2017-12-31T23:00:00Z"}'
Stop it with: kill \$(cat var/predictor.pid)
EOT
