"""The floor the predictor is measured against: the least a Flask service under waitress does.

A bare Flask app served by ``waitress.serve`` with 4 threads (the predictor's default) that
parses the same JSON request body and answers 24 numbers, with no validation, model or
metrics. ``predictor_bench.py`` starts it beside the predictor in the same run and reports the
predictor's figures as ratios to it. Run alone: ``python bench/predictor_floor.py --port 8090``.
"""

from __future__ import annotations

import argparse
import json

import waitress
from flask import Flask, Response, jsonify, request

FLOOR_THREADS = 4


def create_floor_app() -> Flask:
    app = Flask("edgecast-floor")

    @app.post("/v1/predict")
    def predict() -> Response:
        payload = json.loads(request.get_data())
        return jsonify({"forecast_kwh": payload["loads"][-24:]})

    @app.get("/readyz")
    def readyz() -> Response:
        return jsonify({"ready": True})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    waitress.serve(
        create_floor_app(), host="127.0.0.1", port=args.port, threads=FLOOR_THREADS, ident="floor"
    )


if __name__ == "__main__":
    main()
