"""The predictor's HTTP API, called over HTTP on real ``edgecast serve`` processes.

Bad input is answered with a 4xx status and a JSON body whose "error" names the problem, and the
process keeps serving valid requests; probes, model info, metrics and the admin API behave as an
operator (or a Kubernetes kubelet) expects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from edgecast_harness.bad_requests import (
    ACCEPTED_AUTHORIZATIONS,
    ADMIN_BAD_REQUESTS,
    BAD_INPUTS,
    BAD_ROUTES,
    HOSTILE_INPUTS,
    JSON,
    RAW_REQUESTS,
    hourly,
    json_error,
    timestamps_body,
)
from edgecast_harness.bundle_faults import read_manifest
from edgecast_harness.predictor import ADMIN_TOKEN, Predictor, PredictorLauncher, send_raw

# --- module-scoped predictor processes (starting one costs seconds: TensorFlow import + load) ---


@pytest.fixture(scope="module")
def start_module_predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable]:
    """Like conftest's ``start_predictor``, but the processes live for the whole module."""
    launcher = PredictorLauncher(tmp_path_factory.mktemp("predictors"))
    yield launcher.start
    launcher.stop_all()


@pytest.fixture(scope="module")
def predictor(trained_store, start_module_predictor) -> Predictor:
    """A plain predictor (no admin API) serving the first trained model."""
    return start_module_predictor(trained_store.root, "--model-id", trained_store.model_ids[0])


@pytest.fixture(scope="module")
def admin_predictor(trained_store, start_module_predictor) -> Predictor:
    """A predictor with the admin API on, serving the first model, the second one in its store."""
    model_id = trained_store.model_ids[0]
    return start_module_predictor(trained_store.root, "--model-id", model_id, admin=True)


def assert_serves(predictor: Predictor, body: dict, model_id: str | None = None) -> dict:
    """The process is alive and answers a valid prediction request with 200."""
    assert predictor.process.poll() is None, f"predictor died:\n{predictor.log()}"
    response = predictor.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["forecast_kwh"]) == 24
    if model_id is not None:
        assert answer["model_id"] == model_id
    return answer


def assert_json_error(response: requests.Response, status: int, *fragments: str) -> dict:
    return json_error(response.status_code, response.headers, response.text, status, fragments)


@pytest.mark.parametrize(("make_request", "status", "fragments"), BAD_INPUTS)
def test_bad_input_is_a_4xx_json_error_naming_the_problem(
    predictor, body, make_request, status, fragments
):
    response = predictor.post("/v1/predict", **make_request(body))
    assert_json_error(response, status, *fragments)
    assert_serves(predictor, body)


@pytest.mark.parametrize("make_request", HOSTILE_INPUTS)
def test_hostile_json_is_a_4xx_not_an_internal_error(predictor, body, make_request):
    response = predictor.post("/v1/predict", **make_request(body))
    assert 400 <= response.status_code < 500, (
        f"client error answered as a server error: {response.status_code} {response.text}"
    )
    assert response.json()["error"]
    assert_serves(predictor, body)


@pytest.mark.parametrize(("make_request", "status", "fragments"), RAW_REQUESTS)
def test_the_server_answers_bad_framing_with_a_json_error(
    predictor, body, make_request, status, fragments
):
    answer = send_raw(predictor.port, make_request(body))
    json_error(answer.status, answer.headers, answer.text, status, fragments)
    assert_serves(predictor, body)


@pytest.mark.parametrize(("method", "path", "status"), BAD_ROUTES)
def test_routes_outside_the_api_are_json_errors(predictor, body, method, path, status):
    response = requests.request(
        method, predictor.url + path, json=body, timeout=10, allow_redirects=False
    )
    assert_json_error(response, status)
    if status == 405:
        assert response.headers["Allow"], response.headers


def test_body_far_over_the_limit_is_refused_before_the_app(predictor, body):
    """waitress answers a body over the limit before reading it, in JSON, and lets the client
    send it all (it reads and drops the rest) so the client can read the answer."""
    response = predictor.post("/v1/predict", data=b"x" * (2 * 1024 * 1024), headers=JSON)
    assert_json_error(response, 413, "larger than the limit")
    assert_serves(predictor, body)


def test_timestamps_list_gives_the_same_forecast_as_last_timestamp(predictor, body):
    by_last = assert_serves(predictor, body)
    stamps = hourly(body["last_timestamp"])
    assert stamps[-1] == body["last_timestamp"]
    by_list = predictor.post("/v1/predict", json=timestamps_body(body, stamps))
    assert by_list.status_code == 200, by_list.text
    assert by_list.json() == by_last
    # The same instants written with an offset (and no 'Z') are the same series.
    plus_five = timezone(timedelta(hours=5))
    shifted = [
        datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(plus_five).isoformat()
        for s in stamps
    ]
    assert shifted[-1] == "2017-12-21T04:00:00+05:00"
    by_offset = predictor.post("/v1/predict", json=timestamps_body(body, shifted))
    assert by_offset.status_code == 200, by_offset.text
    assert by_offset.json()["forecast_kwh"] == by_last["forecast_kwh"]
    assert by_last["timestamps"][0] == "2017-12-21T00:00:00Z"


def test_probes_model_info_and_metrics(predictor, body, trained_store):
    model_id = trained_store.model_ids[0]
    assert_serves(predictor, body, model_id)

    health = predictor.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "alive"}

    ready = predictor.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "model_id": model_id}

    info = predictor.get("/v1/model")
    assert info.status_code == 200
    model = info.json()
    assert model["model_id"] == model_id
    assert model["runtime"] == "keras"
    assert model["parity"]["ok"] is True
    assert model["parity"]["cases"] > 0
    assert model["parity"]["max_abs_diff_kwh"] <= model["parity"]["allowed_kwh_at_worst"]
    manifest = read_manifest(trained_store.root / model_id)
    summary = model["manifest"]
    assert summary["model_id"] == model_id
    assert summary["created"] == manifest["created"]
    assert summary["metrics"] == manifest["metrics"]
    assert summary["files"] == sorted(manifest["files"])
    assert summary["signed"] is False
    assert model["previous"] is None

    metrics = predictor.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.text
    assert "edgecast_requests_total" in text
    assert "edgecast_predict_latency_seconds" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}  # valid Prometheus text
    requests_ok = [
        s
        for s in families["edgecast_requests"].samples
        if s.name == "edgecast_requests_total"
        and s.labels == {"endpoint": "/v1/predict", "status": "200"}
    ]
    assert requests_ok and requests_ok[0].value >= 1
    latency = {s.name: s for s in families["edgecast_predict_latency_seconds"].samples}
    assert latency["edgecast_predict_latency_seconds_count"].value >= 1
    ready_gauge = families["edgecast_ready"].samples[0]
    assert ready_gauge.value == 1
    info_samples = families["edgecast_model_info"].samples
    assert [s.labels for s in info_samples] == [{"model_id": model_id, "runtime": "keras"}]


def test_admin_endpoints_do_not_exist_without_a_token(predictor, body, trained_store):
    for path in ("/admin/v1/models", "/admin/v1/rollback"):
        response = requests.post(
            predictor.url + path,
            json={"model_id": trained_store.model_ids[1]},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        assert_json_error(response, 404)
    assert_serves(predictor, body, trained_store.model_ids[0])


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("", id="empty-header"),
        pytest.param(f"Bearer {ADMIN_TOKEN}x", id="wrong-token"),
        pytest.param(f"Bearer {ADMIN_TOKEN[:-1]}", id="token-prefix"),
        pytest.param(ADMIN_TOKEN, id="token-without-bearer"),
        pytest.param(f"Basic {ADMIN_TOKEN}", id="basic-scheme"),
    ],
)
@pytest.mark.parametrize("path", ["/admin/v1/models", "/admin/v1/rollback"])
def test_admin_needs_the_bearer_token(admin_predictor, body, trained_store, authorization, path):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.post(
        admin_predictor.url + path,
        json={"model_id": trained_store.model_ids[1]},
        headers=headers,
        timeout=10,
    )
    assert_json_error(response, 401, "bearer token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_serves(admin_predictor, body, trained_store.model_ids[0])


@pytest.mark.parametrize(("make_request", "status", "fragments"), ADMIN_BAD_REQUESTS)
def test_bad_admin_requests_are_400_naming_the_problem(
    admin_predictor, body, trained_store, make_request, status, fragments
):
    kwargs = make_request(trained_store.model_ids[1])
    kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = requests.post(admin_predictor.url + "/admin/v1/models", timeout=10, **kwargs)
    error = assert_json_error(response, status, *fragments)
    assert "loads" not in error["error"]
    assert_serves(admin_predictor, body, trained_store.model_ids[0])


@pytest.mark.parametrize("authorization", ACCEPTED_AUTHORIZATIONS)
def test_the_bearer_scheme_is_case_insensitive(admin_predictor, authorization):
    response = requests.post(
        admin_predictor.url + "/admin/v1/rollback",
        headers={"Authorization": authorization.format(token=ADMIN_TOKEN)},
        timeout=10,
    )
    assert_json_error(response, 409, "no previous model")


def test_admin_swap_rollback_and_refusals(admin_predictor, body, trained_store):
    first, second = trained_store.model_ids
    p = admin_predictor
    assert_serves(p, body, first)

    # Nothing to roll back to yet.
    assert_json_error(p.admin("/admin/v1/rollback"), 409, "no previous model")
    assert_serves(p, body, first)

    # Swap to the second model: the next prediction comes from it.
    swapped = p.admin("/admin/v1/models", {"model_id": second})
    assert swapped.status_code == 200, swapped.text
    assert swapped.json()["model_id"] == second
    assert swapped.json()["previous_model_id"] == first
    assert swapped.json()["parity"]["ok"] is True
    assert_serves(p, body, second)
    assert p.get("/readyz").json() == {"ready": True, "model_id": second}
    model = p.get("/v1/model").json()
    assert (model["model_id"], model["previous"]["model_id"]) == (second, first)

    # Roll back to the first.
    rolled = p.admin("/admin/v1/rollback")
    assert rolled.status_code == 200, rolled.text
    assert rolled.json() == {"model_id": first, "previous_model_id": second}
    assert_serves(p, body, first)
    assert p.get("/readyz").json()["model_id"] == first

    # An unknown model: 404, and the old model keeps serving.
    missing = p.admin("/admin/v1/models", {"model_id": "sbn-b13-20990101-000000-deadbeef"})
    assert_json_error(missing, 404, "sbn-b13-20990101-000000-deadbeef")
    assert_serves(p, body, first)

    # Malformed requests to the swap endpoint: 4xx JSON, and the old model keeps serving.
    for bad in (
        {"model_id": "../" + first},
        {"model_id": 42},
        {"model": second},
        {"model_id": second, "force": True},
    ):
        response = p.admin("/admin/v1/models", bad)
        assert 400 <= response.status_code < 500, (bad, response.status_code, response.text)
        assert response.json()["error"], bad
        assert_serves(p, body, first)
    wrong_type = requests.post(
        p.url + "/admin/v1/models",
        data=json.dumps({"model_id": second}),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "text/plain"},
        timeout=10,
    )
    assert_json_error(wrong_type, 415)
    assert_serves(p, body, first)

    metrics = p.get("/metrics").text
    assert 'edgecast_model_swaps_total{result="loaded"} 1.0' in metrics
    assert 'edgecast_model_swaps_total{result="rollback"} 1.0' in metrics
    assert f'edgecast_model_info{{model_id="{first}",runtime="keras"}} 1.0' in metrics


def test_empty_store_stays_alive_but_not_ready(start_predictor, tmp_path, body):
    empty = tmp_path / "empty-store"
    empty.mkdir()
    p = start_predictor(empty, wait=False)
    p.wait_alive()

    deadline = time.monotonic() + 60
    while True:
        ready = p.get("/readyz")
        assert ready.status_code == 503, ready.text
        reason = ready.json()["reason"]
        if reason != "loading model" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ready.json()["ready"] is False
    assert "no bundle" in reason, reason

    assert p.get("/healthz").status_code == 200
    predict = p.post("/v1/predict", json=body)
    error = assert_json_error(predict, 503, "no model")
    assert "no bundle" in error["reason"]
    assert_json_error(p.get("/v1/model"), 503, "no model")
    assert "edgecast_ready 0.0" in p.get("/metrics").text
    assert p.process.poll() is None, p.log()
    assert "holds no bundle" in p.log()
