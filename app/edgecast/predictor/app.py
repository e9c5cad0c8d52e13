"""The predictor's Flask application factory: prediction API, probes, metrics, admin swap."""

from __future__ import annotations

import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from werkzeug.exceptions import HTTPException

from edgecast.bundle import BundleError
from edgecast.bundle.errors import cut_short
from edgecast.forecaster import ParityError
from edgecast.predictor.config import PredictorConfig
from edgecast.predictor.holder import ModelHolder, ServingModel, SwapInProgress
from edgecast.predictor.live_accuracy import LiveAccuracy
from edgecast.predictor.observability import PredictorMetrics
from edgecast.predictor.openapi import openapi_document
from edgecast.predictor.shadow import ShadowScorer
from edgecast.predictor.validation import (
    RequestError,
    finite_or_error,
    iso_hours,
    parse_json,
    parse_predict_request,
)
from edgecast.store_rules import MODEL_ID_PATTERN

log = logging.getLogger("edgecast.predictor")
PREDICT_BODY = "a JSON object with 'loads' and 'last_timestamp'"
SWAP_BODY = '{"model_id": "<a model in the store>"}'


@dataclass
class PredictorState:
    config: PredictorConfig
    holder: ModelHolder
    metrics: PredictorMetrics
    load_error: str | None = None
    # Request counters by endpoint and status, looked up once (labels() locks and builds a key).
    counters: dict[tuple[str, int], Counter] = field(default_factory=dict)
    # The forecasts issued, scored against the actuals later requests carry; the state's, not a
    # model's, so that a swap keeps every model's figures.
    live: LiveAccuracy = field(init=False)
    # Scores the previous model on the same requests when the config asks for it.
    shadow: ShadowScorer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.live = LiveAccuracy(self.config.live_max_series)
        self.metrics.watch_live_accuracy(self.live)
        if self.config.shadow:
            self.shadow = ShadowScorer(
                self.holder, self.live, self.metrics.shadow_requests, self.config.shadow_rate
            )

    def count(self, endpoint: str, status: int) -> None:
        counter = self.counters.get((endpoint, status))
        if counter is None:
            counter = self.metrics.requests.labels(endpoint, str(status))
            self.counters[(endpoint, status)] = counter
        counter.inc()

    def record_model(self, serving: ServingModel) -> None:
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(serving.model_id, self.config.runtime).set(1)
        self.metrics.parity_diff.set(serving.parity.max_abs_diff)
        self.metrics.swap_seconds.set(serving.load_seconds)


def _error(message: str, status: int, **extra: object) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status, **extra}), status


def _model_view(serving: ServingModel | None) -> dict[str, object] | None:
    if serving is None:
        return None
    return {
        "model_id": serving.model_id,
        "loaded_at": serving.loaded_at,
        "load_seconds": round(serving.load_seconds, 4),
        "parity": serving.parity.to_dict(),
    }


def _shadow_view(state: PredictorState, serving: ServingModel) -> dict[str, object] | None:
    """The model scored in shadow and both models' figures over exactly the same hours; None
    when shadow scoring is off."""
    if state.shadow is None:
        return None
    shadow = state.shadow.model
    if shadow is None:
        return {"model_id": None, "same_hours": None}
    mine, theirs = state.live.compare(serving.model_id, shadow.model_id, since_hour=0)
    return {
        "model_id": shadow.model_id,
        "same_hours": {"serving": mine.to_dict(), "shadow": theirs.to_dict()},
    }


def _prediction(state: PredictorState, serving: ServingModel, body: bytes) -> dict[str, object]:
    """The answer to a prediction request's body on ``serving``; RequestError when it is bad."""
    forecaster = serving.forecaster
    parsed = parse_predict_request(
        parse_json(body, PREDICT_BODY), forecaster.config, state.config.years
    )
    values = forecaster.forecast(parsed.loads, parsed.last_timestamp, parsed.temperatures)
    forecast = finite_or_error(values)
    state.live.observe(
        parsed.series, serving.model_id, parsed.last_timestamp // 3600, parsed.loads, forecast
    )
    if state.shadow is not None:
        state.shadow.submit(parsed)
    return {
        "model_id": serving.model_id,
        "runtime": state.config.runtime,
        "timestamps": iso_hours(parsed.last_timestamp + 3600, forecaster.config.horizon),
        "forecast_kwh": forecast,
    }


class PredictFastPath:
    """WSGI middleware that answers a valid ``POST /v1/predict`` without Flask's per-request
    machinery (request context, routing, response object, after-request hooks), which costs
    about as much as the forecast itself.

    It takes only the plain case: ``Content-Type: application/json``, a Content-Length within
    the limit, a model serving, and a body that gets a forecast. Anything else, and every
    request it would refuse, goes to the Flask app with its body, which answers it as always;
    so the answers are the app's, byte for byte (``jsonify``'s compact JSON and newline).
    """

    PATH = "/v1/predict"

    def __init__(self, app: Callable[..., Iterable[bytes]], state: PredictorState) -> None:
        self.app = app
        self.state = state
        self.max_body_bytes = state.config.max_body_bytes

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., object]
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        serving = self.state.holder.current
        if (
            serving is None
            or environ.get("PATH_INFO") != self.PATH
            or environ.get("REQUEST_METHOD") != "POST"
            or environ.get("CONTENT_TYPE") != "application/json"
        ):
            return self.app(environ, start_response)
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or int(length) > self.max_body_bytes:
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(int(length))
        try:
            answer = _prediction(self.state, serving, body)
        except Exception:  # refused or failed: the app answers it, with the body it read
            environ["wsgi.input"] = io.BytesIO(body)
            return self.app(environ, start_response)
        data = (json.dumps(answer, separators=(",", ":")) + "\n").encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        self.state.count(self.PATH, 200)
        self.state.metrics.predict_latency.observe(time.perf_counter() - started)
        return [data]


def _api(state: PredictorState) -> Blueprint:
    api = Blueprint("api", __name__)
    holder, metrics, runtime = state.holder, state.metrics, state.config.runtime

    @api.post("/v1/predict")
    def predict() -> tuple[Response, int] | Response:
        started = time.perf_counter()
        if request.mimetype != "application/json":
            raise RequestError("Content-Type must be application/json", status=415)
        serving = holder.current  # this request finishes on this model, whatever swaps happen
        if serving is None:
            return _error("no model is loaded yet", 503, reason=state.load_error)
        response = jsonify(_prediction(state, serving, request.get_data(cache=False)))
        metrics.predict_latency.observe(time.perf_counter() - started)
        return response

    @api.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "alive"})

    @api.get("/readyz")
    def readyz() -> tuple[Response, int]:
        serving = holder.current
        if holder.ready and serving is not None:
            return jsonify({"ready": True, "model_id": serving.model_id}), 200
        reason = "shutting down" if holder.draining else (state.load_error or "loading model")
        return jsonify({"ready": False, "reason": reason}), 503

    @api.get("/v1/model")
    def model() -> tuple[Response, int]:
        serving = holder.current
        if serving is None:
            return _error("no model is loaded yet", 503, reason=state.load_error)
        return jsonify(
            {
                **_model_view(serving),  # type: ignore[dict-item]
                "runtime": runtime,
                "manifest": serving.forecaster.bundle.summary(),
                "previous": _model_view(holder.previous),
                "live_accuracy": state.live.snapshot().to_dict(serving.model_id),
                "shadow": _shadow_view(state, serving),
            }
        ), 200

    @api.get("/openapi.json")
    def openapi() -> Response:
        serving = holder.current
        config = serving.forecaster.config if serving is not None else None
        admin = bool(state.config.admin_token)
        return jsonify(openapi_document(config, state.config.years, admin=admin))

    @api.get("/metrics")
    def prometheus() -> Response:
        metrics.ready.set(1 if holder.ready else 0)
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    return api


def _bearer_token(authorization: str) -> bytes:
    """The credentials of a Bearer ``Authorization`` header (the scheme is case-insensitive,
    RFC 7235); empty for any other scheme."""
    scheme, _, credentials = authorization.partition(" ")
    return credentials.lstrip(" ").encode() if scheme.lower() == "bearer" else b""


def _admin(state: PredictorState, token: str) -> Blueprint:
    admin = Blueprint("admin", __name__, url_prefix="/admin/v1")
    expected = token.encode()

    @admin.before_request
    def authenticate() -> tuple[Response, int] | None:
        given = _bearer_token(request.headers.get("Authorization", ""))
        if not hmac.compare_digest(given, expected):
            response, status = _error("missing or wrong bearer token", 401)
            response.headers["WWW-Authenticate"] = 'Bearer realm="edgecast-admin"'
            return response, status
        return None

    @admin.post("/models")
    def swap() -> tuple[Response, int]:
        if request.mimetype != "application/json":
            raise RequestError("Content-Type must be application/json", status=415)
        payload = parse_json(request.get_data(cache=False), SWAP_BODY)
        if not isinstance(payload, dict) or set(payload) != {"model_id"}:
            raise RequestError(f"the body must be {SWAP_BODY}")
        model_id = payload["model_id"]
        if not isinstance(model_id, str) or MODEL_ID_PATTERN.fullmatch(model_id) is None:
            raise RequestError(
                f"'model_id' {json.dumps(model_id)[:60]} is not a model id: 1 to 128 letters, "
                "digits, '.', '_' or '-', starting with a letter or digit"
            )
        old = state.holder.current
        try:
            serving = state.holder.load(model_id)
        except SwapInProgress as exc:
            return _error(str(exc), 409)
        except LookupError as exc:
            state.metrics.swaps.labels("refused").inc()
            return _error(str(exc), 404)
        except (BundleError, ParityError) as exc:
            state.metrics.swaps.labels("refused").inc()
            log.warning("refused model %s: %s", model_id, exc)
            return _error(
                f"bundle refused: {exc}",
                422,
                serving_model_id=old.model_id if old else None,
            )
        except Exception as exc:  # whatever failed, the old model serves on
            state.metrics.swaps.labels("refused").inc()
            log.exception("model %s could not be loaded", model_id)
            return _error(
                f"model {model_id} could not be loaded: {type(exc).__name__}: {cut_short(exc)}",
                422,
                serving_model_id=old.model_id if old else None,
            )
        state.metrics.swaps.labels("loaded").inc()
        state.record_model(serving)
        log.info(
            "now serving %s (loaded and verified in %.3f s)", serving.model_id, serving.load_seconds
        )
        return jsonify(
            {
                **_model_view(serving),  # type: ignore[dict-item]
                "previous_model_id": old.model_id if old else None,
            }
        ), 200

    @admin.post("/rollback")
    def rollback() -> tuple[Response, int]:
        try:
            serving = state.holder.rollback()
        except LookupError as exc:
            return _error(str(exc), 409)
        state.metrics.swaps.labels("rollback").inc()
        state.record_model(serving)
        log.info("rolled back to %s", serving.model_id)
        return jsonify(
            {"model_id": serving.model_id, "previous_model_id": state.holder.previous.model_id}
        ), 200  # type: ignore[union-attr]

    return admin


def create_app(state: PredictorState) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = state.config.max_body_bytes
    # No answer outside the JSON API: OPTIONS would be an empty text/html 200, and a merged
    # slash ("/v1//predict") an HTML redirect; both are then a JSON 405 or 404.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.url_map.merge_slashes = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["edgecast"] = state
    app.register_blueprint(_api(state))
    if state.config.admin_token:
        app.register_blueprint(_admin(state, state.config.admin_token))

    @app.errorhandler(RequestError)
    def bad_request(exc: RequestError) -> tuple[Response, int]:
        return _error(str(exc), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        message = exc.description or exc.name
        if exc.code == 413:
            message = f"body is larger than the limit of {state.config.max_body_bytes} bytes"
        response, status = _error(message, exc.code or 500)
        for name, value in exc.get_headers():  # Allow, on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(f"internal error: {type(exc).__name__}", 500)

    @app.after_request
    def count(response: Response) -> Response:
        state.count(
            request.url_rule.rule if request.url_rule else "unmatched", response.status_code
        )
        return response

    app.wsgi_app = PredictFastPath(app.wsgi_app, state)  # type: ignore[method-assign]

    return app
