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

from edgecast_harness.bad_requests import check_fuzz_answer, fuzz_raw_requests, fuzz_requests
from edgecast_harness.bodies import window_from_data
from edgecast_harness.predictor import GOLDEN_STORE, send_raw

SEED = int(os.environ.get("EDGECAST_FUZZ_SEED", "20261202"))
CASES, RAW_CASES = 400, 200


def test_fuzzed_requests_over_http_get_json_answers_and_no_5xx(start_predictor):
    predictor = start_predictor(GOLDEN_STORE, "--runtime", "litert")
    body = window_from_data()
    statuses: dict[int, int] = {}
    failures = []
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
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        try:
            check_fuzz_answer(path, response.status_code, response.headers, response.text)
        except (AssertionError, ValueError) as exc:
            failures.append((case, method, path[:40], repr(exc)[:300]))
    for case, request in fuzz_raw_requests(SEED, RAW_CASES, body):
        answer = send_raw(predictor.port, request, timeout=10)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        try:
            check_fuzz_answer("", answer.status, answer.headers, answer.text)
        except (AssertionError, ValueError) as exc:
            failures.append((case, "raw", request[:60], repr(exc)[:300]))
    print(f"seed {SEED}: {CASES} + {RAW_CASES} raw requests, by status {sorted(statuses.items())}")
    assert not failures, f"{len(failures)} bad answers (seed {SEED}): {failures[:5]}"
    assert predictor.process.poll() is None, predictor.log_tail()
    assert predictor.get("/readyz").status_code == 200
    assert predictor.post("/v1/predict", json=body).status_code == 200
    assert "Traceback" not in predictor.log(), predictor.log_tail(60)
