"""A bounded sample of the seeded fuzzing over real HTTP, against a real ``edgecast serve``
(LiteRT): requests damaged in body, JSON text, fields, timestamps, headers, methods and paths
(through ``requests``), and requests damaged at the HTTP level (as raw bytes). Not one answer
may be a 5xx or anything but a JSON object, and the process keeps serving.

The unit tier runs many more of the same cases in-process; EDGECAST_FUZZ_SEED picks another
seed (the default keeps every run the same).
"""

from __future__ import annotations

import os

import requests

from edgecast_harness.bad_requests import FuzzAnswers, fuzz_requests
from edgecast_harness.predictor import GOLDEN_STORE

SEED = int(os.environ.get("EDGECAST_FUZZ_SEED", "20261202"))
CASES, RAW_CASES = 400, 200


def test_fuzzed_requests_over_http_get_json_answers_and_no_5xx(start_predictor, body):
    predictor = start_predictor(GOLDEN_STORE, "--runtime", "litert")
    answers = FuzzAnswers(SEED)
    session = requests.Session()
    for case, request in fuzz_requests(SEED, CASES, body):
        method, path = request["method"], request["path"]
        response = session.request(
            method,
            predictor.url + path,
            data=request["data"],
            headers=request["headers"],
            timeout=10,
            allow_redirects=False,
        )
        sent = f"{method} {path[:40]}"
        answers.add(case, sent, path, response.status_code, response.headers, response.text)
    answers.send_raw_requests(predictor.port, RAW_CASES, body, timeout=10)
    statuses = sorted(answers.statuses.items())
    print(f"seed {SEED}: {CASES} + {RAW_CASES} raw requests, by status {statuses}")
    answers.assert_all_good()
    assert predictor.process.poll() is None, predictor.log_tail()
    assert predictor.get("/readyz").status_code == 200
    assert predictor.post("/v1/predict", json=body).status_code == 200
    assert "Traceback" not in predictor.log(), predictor.log_tail(60)
