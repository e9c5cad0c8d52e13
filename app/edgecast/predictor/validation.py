"""Parse and check a prediction request; every problem becomes a message naming the field."""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from edgecast.architecture import SBNConfig
from edgecast.predictor.live_accuracy import DEFAULT_SERIES, SERIES_PATTERN

ALLOWED_FIELDS = ("loads", "last_timestamp", "timestamps", "temperatures", "series")
# What json.loads makes of a JSON number (bool, a subclass of int, is not one).
_NUMBER_TYPES = frozenset({float, int})
FIRST_YEAR, LAST_YEAR = 2000, 2100
# ISO 8601's extended format as RFC 3339 profiles it (seconds and the zone optional; no zone
# is UTC). datetime.fromisoformat alone takes far more: anything after a NUL, offsets with
# seconds and microseconds, compact and week dates.
_ISO_8601 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)


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
    series: str = DEFAULT_SERIES  # whose loads these are: live accuracy scores each apart


@dataclass(frozen=True)
class Years:
    """The years a timestamp may fall in: far-off dates are typing errors or probes, and near
    the ends of datetime's range converting them overflows."""

    first: int = FIRST_YEAR
    last: int = LAST_YEAR

    def __post_init__(self) -> None:
        if not 1 < self.first <= self.last < 9999:
            raise ValueError(
                f"the years must satisfy 1 < first <= last < 9999, got {self.first}-{self.last}"
            )


DEFAULT_YEARS = Years()


def _reject_constant(name: str) -> float:
    raise RequestError(f"{name} is not allowed: every value must be a finite number")


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object whose keys are all different (otherwise the last one would silently win)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RequestError(f"duplicate key {json.dumps(key)[:60]}: send each field once")
            seen.add(key)
    return result


# json.loads with these arguments would build a decoder for every request.
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, object_pairs_hook=_object_without_duplicates
)


def parse_json(body: bytes, expected: str) -> object:
    """The JSON document in ``body``; ``expected`` tells the client what to send instead."""
    if not body:
        raise RequestError(f"empty body: send {expected}")
    try:
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RequestError:
        raise
    except RecursionError:
        raise RequestError("body is nested too deeply to be a JSON request") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON: {exc}") from None


def _numbers(name: str, value: object, length: int, *, non_negative: bool) -> np.ndarray:
    if not isinstance(value, list):
        raise RequestError(f"'{name}' must be a list of {length} numbers")
    if len(value) != length:
        raise RequestError(f"'{name}' must hold exactly {length} hourly values, got {len(value)}")
    if not _NUMBER_TYPES.issuperset(map(type, value)):  # in C; the loop only to say where
        for i, item in enumerate(value):
            if type(item) is not float and type(item) is not int:
                raise RequestError(f"'{name}[{i}]' is not a number: {json.dumps(item)[:40]}")
    try:
        array = np.array(value, dtype=np.float64)
    except OverflowError:
        raise RequestError(f"'{name}' holds an integer too large for a number") from None
    # Two reductions settle the common case (a NaN makes both comparisons false); the element
    # at fault is looked for only in a request that is refused.
    low, high = array.min(), array.max()
    if not -math.inf < low <= high < math.inf:
        bad = ~np.isfinite(array)
        raise RequestError(f"'{name}[{int(np.argmax(bad))}]' is not a finite number")
    if non_negative and low < 0:
        raise RequestError(f"'{name}[{int(np.argmax(array < 0))}]' is negative")
    return array


def _timestamp(name: str, value: object, years: Years) -> int:
    example = "such as 2017-12-31T23:00:00Z"
    if not isinstance(value, str):
        raise RequestError(f"'{name}' must be an ISO 8601 string {example}")
    if _ISO_8601.fullmatch(value) is None:
        raise RequestError(f"'{name}' is not an ISO 8601 timestamp {example}: {value[:40]!r}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise RequestError(f"'{name}' is not a valid date and time: {value!r}") from None
    outside = RequestError(
        f"'{name}' {value!r} is outside the years {years.first} to {years.last} "
        "that this predictor accepts"
    )
    # An offset moves the instant by less than a day, so the conversion cannot overflow here.
    if not years.first - 1 <= moment.year <= years.last + 1:
        raise outside
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if not years.first <= moment.year <= years.last:
        raise outside
    if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
        raise RequestError(f"'{name}' {value!r} is not on the hour: the series must be hourly")
    return int(moment.timestamp())


def _series(value: object) -> str:
    if not isinstance(value, str) or SERIES_PATTERN.fullmatch(value) is None:
        shown = json.dumps(value)[:60]
        raise RequestError(
            f"'series' {shown} is not a series name: 1 to 64 letters, digits, '.', '_' or '-', "
            'starting with a letter or digit (such as "b13")'
        )
    return value


def _last_of_hourly(value: object, length: int, years: Years) -> int:
    if not isinstance(value, list) or len(value) != length:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise RequestError(f"'timestamps' must be a list of {length} hourly timestamps, got {got}")
    stamps = [_timestamp(f"timestamps[{i}]", v, years) for i, v in enumerate(value)]
    for i in range(1, length):
        if stamps[i] - stamps[i - 1] != 3600:
            raise RequestError(
                f"'timestamps[{i}]' is not one hour after 'timestamps[{i - 1}]': "
                "the series must be hourly, without gaps or repeats"
            )
    return stamps[-1]


def parse_predict_request(
    payload: object, config: SBNConfig, years: Years = DEFAULT_YEARS
) -> PredictRequest:
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
        last = _timestamp("last_timestamp", payload["last_timestamp"], years)
    else:
        last = _last_of_hourly(payload["timestamps"], config.window, years)
    temperatures = None
    if "temperatures" in payload:
        if not config.use_temperature:
            raise RequestError(
                "'temperatures' is not used by this model (it was trained without outdoor "
                "temperature): leave the field out"
            )
        temperatures = _numbers(
            "temperatures", payload["temperatures"], config.window, non_negative=False
        )
    elif config.use_temperature:
        raise RequestError(
            f"missing field 'temperatures': this model needs {config.window} hourly outdoor "
            "temperatures (degC) aligned with 'loads'"
        )
    series = _series(payload["series"]) if "series" in payload else DEFAULT_SERIES
    return PredictRequest(loads, last, temperatures, series)


def iso_hours(first: int, count: int) -> list[str]:
    """``count`` hourly UTC timestamps from ``first`` (within the accepted years, so always with
    a four-digit year)."""
    return list(_iso_hours(first, count))


@functools.lru_cache(maxsize=4096)
def _iso_hours(first: int, count: int) -> tuple[str, ...]:
    """Cached: a node's clients ask for the same few hours, and numpy formats them at once."""
    seconds = np.arange(first, first + 3600 * count, 3600, dtype=np.int64).astype("datetime64[s]")
    return tuple(f"{stamp}Z" for stamp in np.datetime_as_string(seconds).tolist())


def finite_or_error(values: np.ndarray) -> list[float]:
    if not np.isfinite(values).all():
        raise RequestError("the model produced a non-finite forecast for this input", status=422)
    return values.tolist()  # type: ignore[no-any-return]
