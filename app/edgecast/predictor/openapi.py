"""The predictor's API as an OpenAPI 3.1 document, made from the definitions that check requests.

The request schema takes its fields, patterns and limits from ``validation`` (the allowed fields,
the ISO 8601 and series patterns, the accepted years) and from the serving model's window; the
model id pattern is the store's. So the document and the checks change together, and the tests
hold every real answer of the predictor, errors included, against it. What JSON Schema cannot
say (values on the hour, consecutive timestamps, the years of an instant with an offset) the
descriptions say, and the validator answers with a 400 that names the field.

``python -m edgecast.predictor.openapi`` prints the document for the default model shape (the one
committed as docs/openapi.json).
"""

from __future__ import annotations

import json
from typing import Any

from edgecast.architecture import SBNConfig
from edgecast.predictor.live_accuracy import SERIES_PATTERN
from edgecast.predictor.validation import _ISO_8601, ALLOWED_FIELDS, DEFAULT_YEARS, Years
from edgecast.store_rules import MODEL_ID_PATTERN

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _anchored(pattern: str) -> str:
    """A Python ``fullmatch`` pattern as an ECMA-262 ``pattern`` (which searches)."""
    return f"^(?:{pattern})$"


def _answer(description: str, schema: Schema, media: str = JSON) -> Schema:
    return {"description": description, "content": {media: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    reasons = {
        400: "the request is malformed; the message names the field and what is wrong",
        401: "missing or wrong bearer token",
        404: "no such path, or no such model in the store",
        405: "the method is not allowed on this path (the Allow header lists those that are)",
        408: "the request did not arrive within the request timeout",
        409: "a swap is already in progress, or there is no previous model to roll back to",
        413: "the body is larger than the predictor's limit",
        415: "Content-Type must be application/json",
        422: "the bundle was refused (digests, signature, layout or the parity gate); the "
        "model that served before serves on",
        431: "the request line and headers are too large",
        500: "internal error (the process keeps serving)",
        503: "no model is loaded yet, or the predictor is shutting down",
    }
    return {str(status): _answer(reasons[status], _ref("Error")) for status in statuses}


def year_pattern(years: Years) -> str:
    """The years ``years`` accepts as a pattern: whole decades as ``YYY[0-9]``, others alone."""
    parts: list[str] = []
    year = years.first
    while year <= years.last:
        if year % 10 == 0 and year + 9 <= years.last:
            parts.append(f"{year // 10}[0-9]")
            year += 10
        else:
            parts.append(str(year))
            year += 1
    return f"(?:{'|'.join(parts)})"


def hour_pattern(years: Years) -> str:
    """The validator's ISO 8601 pattern, narrowed to what it accepts: an hour (minutes and
    seconds zero, offsets in whole hours) in ``years`` (an offset that moves the instant into
    another year is left to the validator)."""
    pattern = _ISO_8601.pattern
    narrowings = [
        ("[0-9]{4}-", f"{year_pattern(years)}-"),
        (r":[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?", r":00(:00(\.0{1,6})?)?"),
        ("[+-][0-9]{2}:[0-9]{2}", "[+-][0-9]{2}:00"),
    ]
    for general, narrow in narrowings:
        assert pattern.count(general) == 1, f"validation's timestamp pattern changed: {pattern}"
        pattern = pattern.replace(general, narrow)
    return pattern


def request_schema(config: SBNConfig, years: Years = DEFAULT_YEARS) -> Schema:
    """``POST /v1/predict``'s body for a model of ``config``'s window."""
    timestamp = {
        "type": "string",
        "pattern": _anchored(hour_pattern(years)),
        "description": f"ISO 8601 (RFC 3339) on the hour, UTC unless it has an offset, in the "
        f"years {years.first} to {years.last}; such as 2017-12-31T23:00:00Z",
    }
    hourly = {"type": "array", "minItems": config.window, "maxItems": config.window}
    properties: Schema = {
        "loads": {
            **hourly,
            "items": {"type": "number", "minimum": 0},
            "description": f"the last {config.window} hourly loads in kWh, oldest first",
        },
        "last_timestamp": {
            **timestamp,
            "description": "the hour of the last load: " + timestamp["description"],
        },
        "timestamps": {
            **hourly,
            "items": timestamp,
            "description": "the hour of every load, one hour apart (instead of last_timestamp)",
        },
        "temperatures": {
            **hourly,
            "items": {"type": "number"},
            "description": "outdoor temperatures (degC) aligned with loads; required by a model "
            "trained with temperature, refused by one trained without",
        },
        "series": {
            "type": "string",
            "pattern": _anchored(SERIES_PATTERN.pattern),
            "description": "whose loads these are (a building, a meter): live accuracy scores "
            "each series apart; default one series",
        },
    }
    assert set(properties) == set(ALLOWED_FIELDS), "the schema and the validator disagree"
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": ["loads", *(["temperatures"] if config.use_temperature else [])],
        "additionalProperties": False,
        "oneOf": [{"required": ["last_timestamp"]}, {"required": ["timestamps"]}],
    }
    if not config.use_temperature:
        schema["not"] = {"required": ["temperatures"]}
    return schema


def _schemas(config: SBNConfig, years: Years) -> dict[str, Schema]:
    stamp = {"type": "string", "format": "date-time"}
    model_id = {"type": "string", "pattern": _anchored(MODEL_ID_PATTERN.pattern)}
    figures = {"type": ["number", "null"]}
    window_figures = {
        "type": "object",
        "properties": {
            "mae": figures,
            "mape": figures,
            "bias": figures,
            "pairs": {"type": "integer"},
            "hours": {"type": "integer"},
        },
    }
    return {
        "PredictRequest": request_schema(config, years),
        "PredictResponse": {
            "type": "object",
            "required": ["model_id", "runtime", "timestamps", "forecast_kwh"],
            "additionalProperties": False,
            "properties": {
                "model_id": model_id,
                "runtime": {"enum": ["keras", "litert"]},
                "timestamps": {
                    "type": "array",
                    "items": stamp,
                    "minItems": config.horizon,
                    "maxItems": config.horizon,
                },
                "forecast_kwh": {
                    "type": "array",
                    "items": {"type": "number"},
                    "minItems": config.horizon,
                    "maxItems": config.horizon,
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "status"],
            "properties": {
                "error": {"type": "string", "minLength": 1},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "reason": {"type": ["string", "null"]},
                "serving_model_id": {"type": ["string", "null"]},
            },
        },
        "Parity": {
            "type": "object",
            "required": ["cases", "max_abs_diff_kwh", "allowed_kwh_at_worst", "ok"],
            "properties": {
                "cases": {"type": "integer"},
                "max_abs_diff_kwh": {"type": "number"},
                "allowed_kwh_at_worst": {"type": "number"},
                "ok": {"type": "boolean"},
            },
        },
        "ModelView": {
            "type": "object",
            "required": ["model_id", "loaded_at", "load_seconds", "parity"],
            "properties": {
                "model_id": model_id,
                "loaded_at": stamp,
                "load_seconds": {"type": "number", "minimum": 0},
                "parity": _ref("Parity"),
            },
        },
        "Model": {
            "allOf": [_ref("ModelView")],
            "type": "object",
            "required": ["runtime", "manifest", "previous"],
            "properties": {
                "runtime": {"enum": ["keras", "litert"]},
                "manifest": {"type": "object", "description": "the bundle's manifest summary"},
                "previous": {"oneOf": [_ref("ModelView"), {"type": "null"}]},
                "shadow": {
                    "type": ["object", "null"],
                    "description": "with shadow scoring on: the previous model, forecasting the "
                    "same requests off the response path, and both models' live figures over "
                    "exactly the same hours",
                    "properties": {
                        "model_id": {"type": ["string", "null"]},
                        "same_hours": {
                            "type": ["object", "null"],
                            "properties": {"serving": window_figures, "shadow": window_figures},
                        },
                    },
                },
                "live_accuracy": {
                    "type": "object",
                    "description": "forecasts scored against the actuals later requests carry",
                    "properties": {
                        "models": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"24h": window_figures, "7d": window_figures},
                            },
                        }
                    },
                },
            },
        },
        "Swapped": {
            "allOf": [_ref("ModelView")],
            "type": "object",
            "required": ["previous_model_id"],
            "properties": {"previous_model_id": {"type": ["string", "null"]}},
        },
        "RolledBack": {
            "type": "object",
            "required": ["model_id", "previous_model_id"],
            "properties": {"model_id": model_id, "previous_model_id": model_id},
        },
        "Ready": {
            "type": "object",
            "required": ["ready"],
            "properties": {
                "ready": {"type": "boolean"},
                "model_id": model_id,
                "reason": {"type": ["string", "null"]},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "alive"}},
        },
    }


def openapi_document(
    config: SBNConfig | None = None, years: Years = DEFAULT_YEARS, *, admin: bool = True
) -> Schema:
    """The document for a model of ``config``'s shape (the default shape without one)."""
    config = config or SBNConfig()
    paths: Schema = {
        "/v1/predict": {
            "post": {
                "summary": f"Forecast the next {config.horizon} hours from the last "
                f"{config.window}",
                "operationId": "predict",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("PredictRequest")}},
                },
                "responses": {
                    "200": _answer(
                        "the forecast, and the model that made it", _ref("PredictResponse")
                    ),
                    **_errors(400, 405, 408, 413, 415, 431, 500, 503),
                },
            }
        },
        "/v1/model": {
            "get": {
                "summary": "The serving model, its parity figures, the one before it, and its "
                "live accuracy",
                "operationId": "model",
                "responses": {"200": _answer("the serving model", _ref("Model")), **_errors(503)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers",
                "operationId": "healthz",
                "responses": {"200": _answer("alive", _ref("Health"))},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: a parity-checked model serves",
                "operationId": "readyz",
                "responses": {
                    "200": _answer("ready", _ref("Ready")),
                    "503": _answer("loading, refused or shutting down", _ref("Ready")),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": _answer("text exposition format", {"type": "string"}, "text/plain")
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document, for the serving model's shape",
                "operationId": "openapi",
                "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }
    if admin:
        secured = [{"admin": []}]
        paths["/admin/v1/models"] = {
            "post": {
                "summary": "Load a model from the store beside the serving one, check it, swap",
                "operationId": "swap",
                "security": secured,
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["model_id"],
                                "additionalProperties": False,
                                "properties": {
                                    "model_id": {
                                        "type": "string",
                                        "pattern": _anchored(MODEL_ID_PATTERN.pattern),
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _answer("swapped", _ref("Swapped")),
                    **_errors(400, 401, 404, 409, 413, 415, 422),
                },
            }
        }
        paths["/admin/v1/rollback"] = {
            "post": {
                "summary": "Serve the previous model again",
                "operationId": "rollback",
                "security": secured,
                "responses": {
                    "200": _answer("rolled back", _ref("RolledBack")),
                    **_errors(401, 409),
                },
            }
        }
    from edgecast import __version__

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "edgecast predictor",
            "version": __version__,
            "description": "Energy forecasts from a model transferred from the cloud. The admin "
            "paths exist only when the predictor is started with an admin token.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(config, years),
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
    }


def main() -> None:
    print(json.dumps(openapi_document(), indent=2))


if __name__ == "__main__":
    main()
