"""Parse and check a prediction request; every problem becomes a message naming the field."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from edgecast.architecture import SBNConfig

ALLOWED_FIELDS = ("loads", "last_timestamp", "timestamps", "temperatures")


class RequestError(ValueError):
    """Bad input: answered with a 4xx status and this message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PredictRequest:
    loads: np.ndarray
    last_timestamp: int
    temperatures: np.ndarray | None


def _reject_constant(name: str) -> float:
    raise RequestError(f"{name} is not allowed: every value must be a finite number")


def parse_json(body: bytes) -> object:
    if not body:
        raise RequestError("empty body: send a JSON object with 'loads' and 'last_timestamp'")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except RequestError:
        raise
    except RecursionError:
        raise RequestError("body is nested too deeply to be a prediction request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None


def _numbers(name: str, value: object, length: int, *, non_negative: bool) -> np.ndarray:
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list of {length} numbers")
    if len(value) != length:
        raise RequestError(f"'{name}' must hold exactly {length} hourly values, got {len(value)}")
    for i, item in enumerate(value):
        if type(item) is not float and type(item) is not int:
            raise RequestError(f"'{name}[{i}]' is not a number: {json.dumps(item)[:40]}")
    try:
        array = np.fromiter(value, dtype=np.float64, count=length)
    except OverflowError:
        raise RequestError(f"'{name}' holds an integer too large for a number") from None
    bad = ~np.isfinite(array)
    if bad.any():
        raise RequestError(f"'{name}[{int(np.argmax(bad))}]' is not a finite number")
    if non_negative and (array < 0).any():
        raise RequestError(f"'{name}[{int(np.argmax(array < 0))}]' is negative")
    return array


def _timestamp(name: str, value: object) -> int:
    if not isinstance(value, str):
        raise RequestError(f"'{name}' must be an ISO 8601 string such as 2017-12-31T23:00:00Z")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RequestError(f"'{name}' is not an ISO 8601 timestamp: {value[:40]!r}") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise RequestError(f"'{name}' {value!r} is not on the hour: the series must be hourly")
    return int(moment.timestamp())


def _last_of_hourly(value: object, length: int) -> int:
    if not isinstance(value, list) or len(value) != length:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise RequestError(f"'timestamps' must be a list of {length} hourly timestamps, got {got}")
    stamps = [_timestamp(f"timestamps[{i}]", v) for i, v in enumerate(value)]
    for i in range(1, length):
        if stamps[i] - stamps[i - 1] != 3600:
            raise RequestError(
                f"'timestamps[{i}]' is not one hour after 'timestamps[{i - 1}]': "
                "the series must be hourly, without gaps or repeats"
            )
    return stamps[-1]


def parse_predict_request(payload: object, config: SBNConfig) -> PredictRequest:
    if not isinstance(payload, dict):
        raise RequestError("the body must be a JSON object")
    unknown = sorted(set(payload) - set(ALLOWED_FIELDS))
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; allowed: {list(ALLOWED_FIELDS)}")
    if "loads" not in payload:
        raise RequestError(f"missing field 'loads' (the last {config.window} hourly loads in kWh)")
    loads = _numbers("loads", payload["loads"], config.window, non_negative=True)
    has_last, has_list = "last_timestamp" in payload, "timestamps" in payload
    if has_last == has_list:
        raise RequestError("give exactly one of 'last_timestamp' or 'timestamps'")
    if has_last:
        last = _timestamp("last_timestamp", payload["last_timestamp"])
    else:
        last = _last_of_hourly(payload["timestamps"], config.window)
    temperatures = None
    if "temperatures" in payload:
        temperatures = _numbers(
            "temperatures", payload["temperatures"], config.window, non_negative=False
        )
    elif config.use_temperature:
        raise RequestError(
            f"missing field 'temperatures': this model needs {config.window} hourly outdoor "
            "temperatures (degC) aligned with 'loads'"
        )
    return PredictRequest(loads, last, temperatures if config.use_temperature else None)


def iso_hours(first: int, count: int) -> list[str]:
    return [
        datetime.fromtimestamp(first + 3600 * i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for i in range(count)
    ]


def finite_or_error(values: np.ndarray) -> list[float]:
    out = values.tolist()
    if not all(math.isfinite(v) for v in out):
        raise RequestError("the model produced a non-finite forecast for this input", status=422)
    return out
