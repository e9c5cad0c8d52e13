"""Seeded fuzzing of prediction requests through the app (``create_app(...).test_client()``):
bodies, JSON text, fields, timestamps, headers, methods and paths made by the generator in
edgecast_harness.bad_requests. Not one answer may be a 5xx or anything but a JSON object.

EDGECAST_FUZZ_SEED picks another seed (the default keeps every run the same).
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecast.predictor.app import create_app
from edgecast.predictor.config import PredictorConfig
from edgecast.predictor.server import build_state, load_initial_model
from edgecast_harness.bad_requests import FuzzAnswers, fuzz_requests

SEED = int(os.environ.get("EDGECAST_FUZZ_SEED", "20261201"))
CASES = 3000


def test_fuzzed_requests_get_json_answers_and_no_5xx(golden_bundle: Path, body: dict) -> None:
    state = build_state(PredictorConfig(model_store=golden_bundle.parent, runtime="litert"))
    load_initial_model(state)
    client = create_app(state).test_client()
    answers = FuzzAnswers(SEED)
    for case, request in fuzz_requests(SEED, CASES, body):
        path = request["path"]
        response = client.open(path, **{k: v for k, v in request.items() if k != "path"})
        answers.add(case, path, path, response.status_code, response.headers, response.text)
    statuses = answers.statuses
    print(f"seed {SEED}: {CASES} requests, answers by status {dict(sorted(statuses.items()))}")
    answers.assert_all_good()
    assert statuses.get(200, 0) > 100 and len(statuses) > 4, statuses  # the generator is varied
