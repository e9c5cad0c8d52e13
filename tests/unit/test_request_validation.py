"""Request validation through the Flask application itself (``create_app(...).test_client()``).

The same table of bad requests as the process tier's real server (edgecast_harness.bad_requests),
answered here in milliseconds: a 4xx JSON error naming the problem, never a 500, and the model
keeps answering valid requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from edgecast.forecaster import Forecaster, ParityReport
from edgecast.predictor.app import PredictorState, create_app
from edgecast.predictor.config import PredictorConfig
from edgecast.predictor.holder import ModelHolder
from edgecast.predictor.observability import PredictorMetrics
from edgecast.predictor.server import build_state, load_initial_model
from edgecast_harness import bad_requests
from edgecast_harness.bad_requests import JSON, hourly, json_error
from edgecast_harness.bad_requests import timestamps_body as with_timestamps
from edgecast_harness.predictor import ADMIN_TOKEN


@pytest.fixture(scope="module")
def client(golden_bundle: Path) -> Iterator[FlaskClient]:
    state = build_state(PredictorConfig(model_store=golden_bundle.parent, runtime="litert"))
    load_initial_model(state)
    assert state.load_error is None, state.load_error
    app = create_app(state)
    with app.test_client() as client:
        yield client


@pytest.fixture(scope="module")
def admin_client(golden_bundle: Path) -> FlaskClient:
    config = PredictorConfig(
        model_store=golden_bundle.parent, runtime="litert", admin_token=ADMIN_TOKEN
    )
    state = build_state(config)
    load_initial_model(state)
    return create_app(state).test_client()


def assert_serves(client: FlaskClient, body: dict) -> dict:
    response = client.post("/v1/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.get_json()
    assert len(answer["forecast_kwh"]) == 24
    return answer


@pytest.mark.parametrize(("make_request", "status", "fragments"), bad_requests.BAD_INPUTS)
def test_bad_input_is_a_4xx_json_error_naming_the_problem(
    client: FlaskClient, body: dict, make_request, status: int, fragments: tuple[str, ...]
) -> None:
    response = client.post("/v1/predict", **make_request(body))
    json_error(response.status_code, response.headers, response.text, status, fragments)
    assert_serves(client, body)


@pytest.mark.parametrize("make_request", bad_requests.HOSTILE_INPUTS)
def test_hostile_json_is_a_4xx_not_an_internal_error(
    client: FlaskClient, body: dict, make_request
) -> None:
    response = client.post("/v1/predict", **make_request(body))
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert response.get_json()["error"]
    assert_serves(client, body)


@pytest.mark.parametrize(("method", "path", "status"), bad_requests.BAD_ROUTES)
def test_routes_outside_the_api_are_json_errors(
    client: FlaskClient, body: dict, method: str, path: str, status: int
) -> None:
    response = client.open(path, method=method, json=body)
    json_error(response.status_code, response.headers, response.text, status, ())
    if status == 405:
        assert response.headers["Allow"], response.headers


@pytest.mark.parametrize(("make_request", "status", "fragments"), bad_requests.ADMIN_BAD_REQUESTS)
def test_bad_admin_requests_are_400_naming_the_problem(
    admin_client: FlaskClient, golden_bundle: Path, make_request, status: int, fragments
) -> None:
    kwargs = make_request(golden_bundle.name)
    kwargs["headers"] = {**kwargs.get("headers", {}), "Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = admin_client.post("/admin/v1/models", **kwargs)
    error = json_error(response.status_code, response.headers, response.text, status, fragments)
    assert "loads" not in error["error"]


@pytest.mark.parametrize("authorization", bad_requests.ACCEPTED_AUTHORIZATIONS)
def test_the_bearer_scheme_is_case_insensitive(
    admin_client: FlaskClient, authorization: str
) -> None:
    headers = {"Authorization": authorization.format(token=ADMIN_TOKEN)}
    response = admin_client.post("/admin/v1/rollback", headers=headers)
    json_error(response.status_code, response.headers, response.text, 409, ("no previous model",))


@pytest.mark.parametrize("scheme", ["Basic", "Bearerx", "Token"])
def test_other_schemes_are_refused(admin_client: FlaskClient, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {ADMIN_TOKEN}"}
    response = admin_client.post("/admin/v1/rollback", headers=headers)
    json_error(response.status_code, response.headers, response.text, 401, ("bearer token",))


def test_timestamps_in_the_configured_years_are_accepted(golden_bundle: Path, body: dict) -> None:
    config = PredictorConfig(
        model_store=golden_bundle.parent, runtime="litert", first_year=1990, last_year=2016
    )
    state = build_state(config)
    load_initial_model(state)
    client = create_app(state).test_client()
    response = client.post("/v1/predict", json=body)  # ends in December 2017
    json_error(response.status_code, response.headers, response.text, 400, ("1990 to 2016",))
    early = {**body, "last_timestamp": "1990-01-01T00:00:00+00:00"}
    answer = assert_serves(client, early)
    assert answer["timestamps"][0] == "1990-01-01T01:00:00Z"


def test_a_valid_request_gets_the_next_24_hours(client: FlaskClient, body: dict) -> None:
    answer = assert_serves(client, body)
    assert answer["runtime"] == "litert"
    assert answer["timestamps"][0] == "2017-12-21T00:00:00Z"
    assert answer["timestamps"][-1] == "2017-12-21T23:00:00Z"
    mean = sum(body["loads"]) / len(body["loads"])
    assert all(0.2 * mean < value < 3 * mean for value in answer["forecast_kwh"])


def test_timestamps_list_gives_the_same_forecast_as_last_timestamp(
    client: FlaskClient, body: dict
) -> None:
    by_last = assert_serves(client, body)
    by_list = assert_serves(client, with_timestamps(body, hourly(body["last_timestamp"])))
    assert by_list == by_last


def test_wrong_content_type_is_415(client: FlaskClient, body: dict) -> None:
    response = client.post("/v1/predict", data=b"{}", headers={"Content-Type": "text/plain"})
    json_error(response.status_code, response.headers, response.text, 415, ("Content-Type",))
    response = client.post("/v1/predict", data=b"", headers=JSON)
    json_error(response.status_code, response.headers, response.text, 400, ("empty body",))


def test_probes_and_unknown_routes(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["ready"] is True
    missing = client.get("/v2/predict")
    assert missing.status_code == 404 and missing.get_json()["error"]
    # Admin routes exist only with a token.
    assert client.post("/admin/v1/models", json={"model_id": "x"}).status_code == 404


def test_an_empty_store_is_alive_not_ready_and_says_why(tmp_path: Path, body: dict) -> None:
    state = build_state(PredictorConfig(model_store=tmp_path, runtime="litert"))
    load_initial_model(state)
    client = create_app(state).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "model refused" in ready.get_json()["reason"]
    response = client.post("/v1/predict", json=body)
    json_error(response.status_code, response.headers, response.text, 503, ("no model",))


def test_a_load_failing_in_an_unforeseen_way_is_a_json_422_and_the_old_model_serves_on(
    golden_bundle: Path, body: dict
) -> None:
    """Whatever a load raises (here the MemoryError of a node out of memory, which no bundle
    check names), the admin API answers a JSON 422 with the reason, never a 500."""
    config = PredictorConfig(
        model_store=golden_bundle.parent, runtime="litert", admin_token=ADMIN_TOKEN
    )
    real = build_state(config).holder._loader

    def loader(model_id: str) -> tuple[Forecaster, ParityReport]:
        if model_id == "out-of-memory":
            raise MemoryError("cannot allocate 83886080 bytes")
        return real(model_id)

    state = PredictorState(config, ModelHolder(loader), PredictorMetrics())
    load_initial_model(state)
    client = create_app(state).test_client()
    response = client.post(
        "/admin/v1/models",
        json={"model_id": "out-of-memory"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 422, response.text
    assert response.get_json() == {
        "error": "model out-of-memory could not be loaded: MemoryError: cannot allocate "
        "83886080 bytes",
        "status": 422,
        "serving_model_id": golden_bundle.name,
    }
    assert assert_serves(client, body)["model_id"] == golden_bundle.name


def test_the_fast_path_answers_as_the_flask_view_does(client: FlaskClient, body: dict) -> None:
    """A plain request is answered by PredictFastPath, one with a charset parameter by the Flask
    view: the same bytes, headers and counted request."""
    data = json.dumps(body).encode()
    fast = client.post("/v1/predict", data=data, content_type="application/json")
    view = client.post("/v1/predict", data=data, content_type="application/json; charset=utf-8")
    assert fast.status_code == view.status_code == 200
    assert fast.data == view.data
    assert fast.headers == view.headers
    metrics = client.get("/metrics").text
    assert 'edgecast_requests_total{endpoint="/v1/predict",status="200"}' in metrics
