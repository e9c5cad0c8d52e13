"""Every answer of a real predictor, errors included, is what its OpenAPI document says.

One real ``edgecast serve`` (waitress, admin API on) over HTTP: the document it serves at
``/openapi.json`` is the generated one for its model; then each endpoint's real answers (the
shared tables of bad requests, bad routes and admin requests included) are held against the
schema the document gives for that path, method and status.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from edgecast.predictor.openapi import openapi_document
from edgecast_harness.bad_requests import ADMIN_BAD_REQUESTS, BAD_INPUTS, BAD_ROUTES
from edgecast_harness.bodies import window_from_data
from edgecast_harness.predictor import Predictor, PredictorLauncher

BODY = window_from_data()
OTHER = window_from_data(end="2017-12-21 23:00")


@pytest.fixture(scope="module")
def predictor(trained_store, tmp_path_factory) -> Iterator[Predictor]:
    launcher = PredictorLauncher(tmp_path_factory.mktemp("openapi"))
    first = trained_store.model_ids[0]
    yield launcher.start(trained_store.root, "--model-id", first, "--runtime", "litert", admin=True)
    launcher.stop_all()


@pytest.fixture(scope="module")
def document(predictor: Predictor) -> dict:
    answer = predictor.get("/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    return document


def check(document: dict, path: str, method: str, answer: requests.Response) -> None:
    """``answer`` is a status the document lists for the operation, with a body its schema
    takes; outside the paths (404, 405), the document's Error."""
    operation = document["paths"].get(path, {}).get(method.lower())
    status = str(answer.status_code)
    if operation is None:
        assert answer.status_code in (404, 405), (path, method, answer.status_code)
        schema: dict = {"$ref": "#/components/schemas/Error"}
        media = "application/json"
    else:
        assert status in operation["responses"], (path, method, status, answer.text[:300])
        ((media, content),) = operation["responses"][status]["content"].items()
        schema = content["schema"]
    assert answer.headers["Content-Type"].startswith(media), answer.headers
    if media != "application/json":
        return
    validator = Draft202012Validator({**schema, "components": document["components"]})
    errors = [error.message for error in validator.iter_errors(answer.json())]
    assert not errors, (path, method, status, errors[:3], answer.text[:300])


def test_the_served_document_is_the_generated_one_for_the_model(predictor, document):
    model = predictor.get("/v1/model").json()["manifest"]
    assert document == openapi_document(), model  # the trained bundles have the default shape
    assert {"/admin/v1/models", "/admin/v1/rollback"} <= set(document["paths"])


def test_every_endpoint_answers_as_documented(predictor, document):
    for _ in range(2):  # the second scores the first's forecasts: live accuracy in /v1/model
        for body in (BODY, OTHER):
            check(document, "/v1/predict", "POST", predictor.post("/v1/predict", json=body))
    for path in ("/v1/model", "/healthz", "/readyz", "/metrics", "/openapi.json"):
        check(document, path, "GET", predictor.get(path))
    assert predictor.get("/v1/model").json()["live_accuracy"]["models"]


@pytest.mark.parametrize(("make_request", "status", "fragments"), BAD_INPUTS)
def test_every_refused_request_is_answered_as_documented(
    predictor, document, make_request, status, fragments
):
    answer = predictor.post("/v1/predict", **make_request(BODY))
    assert answer.status_code == status
    check(document, "/v1/predict", "POST", answer)


@pytest.mark.parametrize(("method", "path", "status"), BAD_ROUTES)
def test_routes_outside_the_api_answer_the_documented_error(
    predictor, document, method, path, status
):
    answer = requests.request(method, predictor.url + path, timeout=10)
    assert answer.status_code == status
    check(document, path, method, answer)


def test_the_admin_api_answers_as_documented(predictor, document, trained_store):
    first, second = trained_store.model_ids
    models = "/admin/v1/models"
    swapped = predictor.admin(models, {"model_id": second})
    assert swapped.status_code == 200, swapped.text
    check(document, models, "POST", swapped)
    for case in ADMIN_BAD_REQUESTS:
        make_request, status, _ = case.values
        answer = requests.post(
            predictor.url + models, timeout=10, **_with_auth(make_request(second), predictor.token)
        )
        assert answer.status_code == status, (case.id, answer.text)
        check(document, models, "POST", answer)
    unknown = predictor.admin(models, {"model_id": "sbn-b13-nowhere"})
    assert unknown.status_code == 404
    check(document, models, "POST", unknown)
    no_token = requests.post(predictor.url + models, json={"model_id": first}, timeout=10)
    assert no_token.status_code == 401
    check(document, models, "POST", no_token)
    rollback = predictor.admin("/admin/v1/rollback")
    assert rollback.status_code == 200, rollback.text
    assert rollback.json()["model_id"] == first
    check(document, "/admin/v1/rollback", "POST", rollback)
    check(document, "/v1/model", "GET", predictor.get("/v1/model"))


def _with_auth(kwargs: dict, token: str) -> dict:
    headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}
    return {**kwargs, "headers": headers}
