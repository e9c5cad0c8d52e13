"""A prediction request's forecast, from a running predictor or from a bundle here.

Locally the request goes through the predictor's own code (``parse_predict_request``, the
forecaster, ``finite_or_error``), so a request that a predictor would refuse is refused here
with the same message, and one it would answer gets the same forecast.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecast.forecaster import Forecaster
from edgecast.predictor.live_accuracy import DEFAULT_SERIES
from edgecast.predictor.validation import (
    RequestError,
    finite_or_error,
    parse_json,
    parse_predict_request,
)

HOUR = 3600
PREDICT_BODY = "a JSON object with 'loads' and 'last_timestamp'"


class RequestForecastError(ValueError):
    """The request cannot be read, or was not answered with a forecast."""


@dataclass(frozen=True)
class RequestForecast:
    """The request's loads (its last one at ``last_timestamp``) and the forecast after them."""

    model_id: str
    runtime: str
    loads: np.ndarray
    last_timestamp: int
    forecast: np.ndarray
    series: str | None = None


def read_request(path: Path) -> tuple[bytes, dict[str, object]]:
    """The request file's bytes, sent as they are, and the JSON object they hold."""
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        raise RequestForecastError(f"cannot read {path}: {exc.strerror}") from None
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestForecastError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("loads"), list):
        raise RequestForecastError(
            f"{path} is not a prediction request: a JSON object with 'loads' and "
            "'last_timestamp' (or 'timestamps'), as POST /v1/predict takes"
        )
    return body, payload


def forecast_locally(forecaster: Forecaster, body: bytes) -> RequestForecast:
    """The forecast a predictor serving ``forecaster`` would answer ``body`` with."""
    try:
        parsed = parse_predict_request(parse_json(body, PREDICT_BODY), forecaster.config)
        values = np.asarray(
            finite_or_error(
                forecaster.forecast(parsed.loads, parsed.last_timestamp, parsed.temperatures)
            )
        )
    except RequestError as exc:
        raise RequestForecastError(f"the request is refused: {exc}") from None
    return RequestForecast(
        forecaster.model_id,
        forecaster.runtime.name,
        parsed.loads,
        parsed.last_timestamp,
        values,
        None if parsed.series == DEFAULT_SERIES else parsed.series,
    )


def _answer_error(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode(errors="replace")
        return str(json.loads(text)["error"])
    except (OSError, ValueError, KeyError, TypeError):
        return exc.reason if isinstance(exc.reason, str) else f"HTTP {exc.code}"


def forecast_remotely(
    url: str, body: bytes, payload: dict[str, object], timeout: float
) -> RequestForecast:
    """POSTs ``body`` to the predictor at ``url`` and reads its forecast."""
    endpoint = f"{url.rstrip('/')}/v1/predict"
    try:
        request = urllib.request.Request(
            endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        raise RequestForecastError(
            f"the predictor at {url} answered {exc.code}: {_answer_error(exc)}"
        ) from None
    except urllib.error.URLError as exc:
        raise RequestForecastError(f"cannot reach a predictor at {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # a timeout, a reset, an answer that is not JSON
        raise RequestForecastError(f"no forecast from the predictor at {url}: {exc}") from None
    try:
        first = int(np.datetime64(str(answer["timestamps"][0]).rstrip("Z"), "s").astype(int))
        forecast = np.asarray(answer["forecast_kwh"], dtype=np.float64)
        model_id, runtime = str(answer["model_id"]), str(answer["runtime"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise RequestForecastError(
            f"the predictor at {url} answered without a forecast: {str(answer)[:200]}"
        ) from None
    series = payload.get("series")
    return RequestForecast(
        model_id,
        runtime,
        np.asarray(payload["loads"], dtype=np.float64),
        first - HOUR,
        forecast,
        series if isinstance(series, str) else None,
    )
