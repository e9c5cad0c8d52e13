"""Bad prediction requests, and what the predictor must answer: one table for every tier.

Each case is a function of a valid body giving the request's keyword arguments (``json=``, or
``data=`` with ``headers=``: the same for ``requests`` and Flask's test client), the status, and
fragments that the "error" message must contain (so that it names the problem). The unit tier
sends them through ``create_app(...).test_client()``, the process tier over HTTP to a real server.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from .predictor import send_raw

JSON = {"Content-Type": "application/json"}
ALLOWED = ("loads", "last_timestamp", "timestamps", "temperatures")
MAX_BODY = 64 * 1024  # the predictor's default --max-body-bytes


def json_error(
    status: int, headers: Mapping[str, str], text: str, want: int, fragments: Iterable[str]
) -> dict:
    """Checks an answer is the JSON error ``{"error", "status"}`` with status ``want`` whose
    message holds every fragment; returns it."""
    assert status == want, (status, text[:500])
    assert headers["Content-Type"].startswith("application/json"), headers
    error = json.loads(text)
    assert isinstance(error, dict), error
    assert error.get("status") == want, error
    for fragment in fragments:
        assert fragment in error["error"], (fragment, error)
    return error


def hourly(last: str, count: int = 600, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> list[str]:
    end = datetime.fromisoformat(last.replace("Z", "+00:00"))
    return [(end - timedelta(hours=count - 1 - i)).strftime(fmt) for i in range(count)]


def with_loads(body: dict, loads: object) -> dict:
    return {**body, "loads": loads}


def replace_load_text(body: dict, index: int, literal: str) -> bytes:
    """The body's JSON text with loads[index] written as ``literal`` (e.g. NaN, not JSON)."""
    loads = [json.dumps(v) for v in body["loads"]]
    loads[index] = literal
    return (
        '{"loads": ['
        + ", ".join(loads)
        + '], "last_timestamp": '
        + json.dumps(body["last_timestamp"])
        + "}"
    ).encode()


def duplicate_key_body(body: dict, key: str) -> bytes:
    """The body's JSON text with ``key`` given twice: first with strings for values, then as is."""
    first = json.dumps(key) + ": " + json.dumps([str(v) for v in body["loads"]][:3])
    return ("{" + first + ", " + json.dumps(body)[1:]).encode()


def timestamps_body(body: dict, stamps: object) -> dict:
    return {"loads": body["loads"], "timestamps": stamps}


def with_gap(stamps: list[str], at: int) -> list[str]:
    """Removes hour ``at`` and appends one at the end: still 600 stamps, one two-hour gap."""
    last = datetime.fromisoformat(stamps[-1].replace("Z", "+00:00")) + timedelta(hours=1)
    return [*stamps[:at], *stamps[at + 1 :], last.strftime("%Y-%m-%dT%H:%M:%SZ")]


def with_repeat(stamps: list[str], at: int) -> list[str]:
    return [*stamps[:at], stamps[at - 1], *stamps[at + 1 :]]


def bad_load_literal(name: str, literal: str, fragments: tuple[str, ...]) -> pytest.ParameterSet:
    """``loads[3]`` written as ``literal`` in the body's JSON text: a 400 naming ``fragments``."""
    return pytest.param(
        lambda b: {"data": replace_load_text(b, 3, literal), "headers": JSON},
        400,
        fragments,
        id=name,
    )


def bad_last_timestamps(fragment: str, stamps: dict[str, object]) -> list[pytest.ParameterSet]:
    """A case for each ``last_timestamp`` of ``stamps`` (by id): a 400 whose error names the
    field and ``fragment``."""
    return [
        pytest.param(
            lambda b, stamp=stamp: {"json": {**b, "last_timestamp": stamp}},
            400,
            ("'last_timestamp'", fragment),
            id=f"last_timestamp-{name}",
        )
        for name, stamp in stamps.items()
    ]


BAD_INPUTS = [
    pytest.param(
        lambda b: {"json": with_loads(b, b["loads"][1:])},
        400,
        ("'loads'", "600", "got 599"),
        id="window-599-values",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, [*b["loads"], 1.0])},
        400,
        ("'loads'", "600", "got 601"),
        id="window-601-values",
    ),
    pytest.param(lambda b: {"json": with_loads(b, [])}, 400, ("got 0",), id="window-empty"),
    bad_load_literal("nan-literal", "NaN", ("NaN", "finite")),
    bad_load_literal("infinity-literal", "Infinity", ("Infinity", "finite")),
    bad_load_literal("minus-infinity-literal", "-Infinity", ("-Infinity", "finite")),
    bad_load_literal("float-overflowing-to-infinity", "1e999", ("'loads[3]'", "finite")),
    pytest.param(
        lambda b: {"json": with_loads(b, [*b["loads"][:5], "12.5", *b["loads"][6:]])},
        400,
        ("'loads[5]'", "not a number"),
        id="string-inside-loads",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, [*b["loads"][:5], None, *b["loads"][6:]])},
        400,
        ("'loads[5]'", "not a number"),
        id="null-inside-loads",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, [True, *b["loads"][1:]])},
        400,
        ("'loads[0]'", "not a number"),
        id="boolean-inside-loads",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, [*b["loads"][:7], -0.5, *b["loads"][8:]])},
        400,
        ("'loads[7]'", "negative"),
        id="negative-load",
    ),
    pytest.param(
        lambda b: {"json": {"last_timestamp": b["last_timestamp"]}},
        400,
        ("missing field 'loads'",),
        id="missing-loads",
    ),
    pytest.param(
        lambda b: {"json": {"loads": b["loads"]}},
        400,
        ("'last_timestamp'", "'timestamps'"),
        id="missing-timestamp",
    ),
    pytest.param(
        lambda b: {"json": {**b, "timestamps": hourly(b["last_timestamp"])}},
        400,
        ("exactly one of 'last_timestamp' or 'timestamps'",),
        id="both-last_timestamp-and-timestamps",
    ),
    pytest.param(
        lambda b: {"json": {**b, "building": "b13"}},
        400,
        ("unknown field", "building"),
        id="unknown-field",
    ),
    *[
        pytest.param(
            lambda b, series=series: {"json": {**b, "series": series}},
            400,
            ("'series'", "not a series name", "1 to 64 letters"),
            id=f"series-{name}",
        )
        for name, series in {
            "empty": "",
            "with-a-space": "b 13",
            "a-path": "../b13",
            "65-characters": "b" * 65,
            "a-number": 13,
            "null": None,
            "a-list": ["b13"],
            "non-ascii": "b13\u00e9",
        }.items()
    ],
    pytest.param(
        lambda b: {"data": json.dumps(b), "headers": {"Content-Type": "text/plain"}},
        415,
        ("Content-Type", "application/json"),
        id="content-type-text-plain",
    ),
    pytest.param(
        lambda b: {"data": json.dumps(b).encode()},
        415,
        ("Content-Type", "application/json"),
        id="content-type-missing",
    ),
    pytest.param(
        lambda b: {"data": b'{"loads": [1, 2, 3', "headers": JSON},
        400,
        ("not valid JSON",),
        id="non-json-body",
    ),
    pytest.param(
        lambda b: {"data": b"\xff\xfe\x00garbage", "headers": JSON},
        400,
        ("not valid JSON",),
        id="body-not-utf8",
    ),
    pytest.param(lambda b: {"data": b"", "headers": JSON}, 400, ("empty body",), id="empty-body"),
    pytest.param(
        lambda b: {"json": [b]}, 400, ("must be a JSON object",), id="json-array-not-object"
    ),
    pytest.param(lambda b: {"json": 42}, 400, ("must be a JSON object",), id="json-number"),
    pytest.param(
        lambda b: {"data": b"x" * (MAX_BODY + 6 * 1024), "headers": JSON},
        413,
        ("larger than the limit", str(MAX_BODY)),
        id="body-over-the-limit",
    ),
    pytest.param(
        lambda b: {"json": {**b, "note": "x" * MAX_BODY}},
        413,
        ("larger than the limit",),
        id="json-object-over-the-limit",
    ),
    *bad_last_timestamps(
        "not on the hour",
        {"at-half-past": "2017-12-20T10:30:00Z", "with-seconds": "2017-12-20T23:00:05Z"},
    ),
    pytest.param(
        lambda b: {"json": timestamps_body(b, with_gap(hourly(b["last_timestamp"]), 300))},
        400,
        ("'timestamps[300]'", "hourly"),
        id="timestamps-with-a-gap",
    ),
    pytest.param(
        lambda b: {"json": timestamps_body(b, with_repeat(hourly(b["last_timestamp"]), 120))},
        400,
        ("'timestamps[120]'", "hourly"),
        id="timestamps-with-a-repeat",
    ),
    pytest.param(
        lambda b: {"json": timestamps_body(b, hourly(b["last_timestamp"])[::-1])},
        400,
        ("'timestamps[1]'", "hourly"),
        id="timestamps-backwards",
    ),
    pytest.param(
        lambda b: {"json": timestamps_body(b, hourly(b["last_timestamp"])[1:])},
        400,
        ("'timestamps'", "600", "599"),
        id="timestamps-599",
    ),
    pytest.param(
        lambda b: {"json": timestamps_body(b, b["last_timestamp"])},
        400,
        ("'timestamps'", "600"),
        id="timestamps-not-a-list",
    ),
    *bad_last_timestamps(
        "ISO 8601",
        {"not-iso-8601": "20/12/2017 23:00", "a-word": "yesterday", "a-number": 1513810800},
    ),
    pytest.param(
        lambda b: {
            "json": timestamps_body(
                b,
                [
                    *hourly(b["last_timestamp"])[:10],
                    "not a time",
                    *hourly(b["last_timestamp"])[11:],
                ],
            )
        },
        400,
        ("'timestamps[10]'", "ISO 8601"),
        id="timestamps-item-not-iso-8601",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, 12.5)},
        400,
        ("'loads'", "must be a list"),
        id="loads-a-number",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, {"values": b["loads"]})},
        400,
        ("'loads'", "must be a list"),
        id="loads-an-object",
    ),
    pytest.param(
        lambda b: {"json": with_loads(b, ",".join(map(str, b["loads"])))},
        400,
        ("'loads'", "must be a list"),
        id="loads-a-string",
    ),
    pytest.param(
        lambda b: {"json": {**b, "temperatures": [10.0] * 600}},
        400,
        ("'temperatures'", "not used by this model"),
        id="temperatures-for-a-model-without-them",
    ),
    # Timestamps outside the years 2000 to 2100: at the ends of datetime's range they were
    # 500s (ValueError for year 10000 in iso_hours, OverflowError converting an offset), and
    # year 1 was answered with forecast stamps such as "1-01-01T01:00:00Z".
    *bad_last_timestamps(
        "outside the years 2000 to 2100",
        {
            "year-9999-last-hour": "9999-12-31T23:00:00Z",
            "year-1-offset-plus-1": "0001-01-01T00:00:00+01:00",
            "year-9999-offset-minus-1": "9999-12-31T23:00:00-01:00",
            "year-1": "0001-01-01T00:00:00Z",
            "year-1999": "1999-12-31T23:00:00Z",
            "year-2101": "2101-01-01T00:00:00Z",
            "2100-by-offset-only": "2100-12-31T23:00:00-01:00",
        },
    ),
    pytest.param(
        lambda b: {"json": timestamps_body(b, hourly("9999-12-31T23:00:00Z"))},
        400,
        ("'timestamps[0]'", "outside the years"),
        id="timestamps-ending-in-year-9999",
    ),
    *bad_last_timestamps(
        "ISO 8601",
        {
            "nul-and-garbage-after": "2017-12-31T23:00:00Z\u0000garbage",
            "offset-with-microseconds": "2017-12-31T23:00:00+00:00:00.000001",
            "trailing-newline": "2017-12-31T23:00:00\n",
            "fullwidth-digits": "\uff12\uff10\uff11\uff17-12-31T23:00:00Z",
        },
    ),
    # Duplicate keys: json.loads let the last one win, so strings in the first "loads" were
    # never checked and the request was answered 200.
    pytest.param(
        lambda b: {"data": duplicate_key_body(b, "loads"), "headers": JSON},
        400,
        ("duplicate key", '"loads"'),
        id="duplicate-loads-key",
    ),
    pytest.param(
        lambda b: {"data": duplicate_key_body(b, "last_timestamp"), "headers": JSON},
        400,
        ("duplicate key", '"last_timestamp"'),
        id="duplicate-last_timestamp-key",
    ),
]

# Hostile bodies: whatever the answer, a 4xx JSON error, never a 500.
HOSTILE_INPUTS = [
    # Found at 3cdcb0a: validation.py's np.fromiter(..., dtype=float64) raised OverflowError
    # on a JSON integer too large for a float, and it escaped as a 500.
    pytest.param(
        lambda b: {"data": replace_load_text(b, 3, "1" + "0" * 400), "headers": JSON},
        id="integer-too-large-for-a-float",
    ),
    # Found at 3cdcb0a: json.loads raises RecursionError on deeply nested arrays (well under
    # the 64 KiB limit); parse_json caught only ValueError, so it was a 500.
    pytest.param(
        lambda b: {"data": b"[" * 30_000 + b"]" * 30_000, "headers": JSON},
        id="deeply-nested-json",
    ),
]

# Methods and paths outside the API: a JSON 404 or 405 (with Allow), never an HTML redirect.
BAD_ROUTES = [
    pytest.param("POST", "/v1//predict", 404, id="merged-slashes-predict"),
    pytest.param("GET", "/v1//model", 404, id="merged-slashes-model"),
    pytest.param("GET", "/healthz/", 404, id="trailing-slash"),
    pytest.param("GET", "/v2/predict", 404, id="unknown-path"),
    pytest.param("GET", "/v1/predict", 405, id="get-on-predict"),
    pytest.param("OPTIONS", "/v1/predict", 405, id="options-on-predict"),
    pytest.param("DELETE", "/healthz", 405, id="delete-on-healthz"),
    pytest.param("POST", "/readyz", 405, id="post-on-readyz"),
]

# The admin API's bad requests (a token is configured): 4xx JSON errors that name the problem.
ADMIN_BAD_REQUESTS = [
    pytest.param(
        lambda model_id: {"data": b"", "headers": JSON},
        400,
        ("empty body", '"model_id"'),
        id="empty-body",
    ),
    pytest.param(
        lambda model_id: {"json": {"model_id": "../" + model_id}},
        400,
        ("'model_id'", "not a model id"),
        id="model-id-with-a-path",
    ),
    pytest.param(
        lambda model_id: {"json": {"model_id": model_id + "\n"}},
        400,
        ("'model_id'", "not a model id"),
        id="model-id-with-a-newline",
    ),
    pytest.param(
        lambda model_id: {"json": {"model_id": 42}},
        400,
        ("'model_id'", "not a model id"),
        id="model-id-a-number",
    ),
    pytest.param(
        lambda model_id: {"json": {"model_id": "x" * 129}},
        400,
        ("'model_id'", "not a model id"),
        id="model-id-too-long",
    ),
    pytest.param(
        lambda model_id: {
            "data": f'{{"model_id": "nope", "model_id": "{model_id}"}}'.encode(),
            "headers": JSON,
        },
        400,
        ("duplicate key", '"model_id"'),
        id="duplicate-model-id-key",
    ),
    pytest.param(
        lambda model_id: {"json": {"model_id": model_id, "force": True}},
        400,
        ("model_id",),
        id="extra-field",
    ),
]

# Authorization headers that carry the right token: the scheme is case-insensitive (RFC 7235)
# and may be followed by more than one space.
ACCEPTED_AUTHORIZATIONS = [
    pytest.param("Bearer {token}", id="Bearer"),
    pytest.param("bearer {token}", id="bearer"),
    pytest.param("BEARER {token}", id="BEARER"),
    pytest.param("Bearer  {token}", id="two-spaces"),
]


def raw_request(
    method: str = "POST",
    path: str = "/v1/predict",
    headers: Iterable[tuple[str, str]] = (("Content-Type", "application/json"),),
    body: bytes = b"",
    *,
    content_length: bool = True,
    version: str = "HTTP/1.1",
) -> bytes:
    """An HTTP/1.1 request as bytes, with Host, Connection: close and (unless told otherwise)
    the body's true Content-Length."""
    lines = [f"{method} {path} {version}", "Host: predictor", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if content_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def framed_by(header: str, value: str, body: bytes = b"") -> bytes:
    """A request whose body is framed by ``header: value`` alone, with no true Content-Length."""
    return raw_request(headers=[*JSON.items(), (header, value)], body=body, content_length=False)


def _json_body(b: dict) -> bytes:
    return json.dumps(b).encode()


# Requests the HTTP server answers itself, before the app: framing, methods, sizes. Each is a
# function of a valid body giving the raw bytes sent on a fresh connection; the answer must be
# the same JSON error as the app's. They were text/plain, an HTML 308, or a reset connection.
RAW_REQUESTS = [
    pytest.param(
        lambda b: raw_request("post", body=_json_body(b)),
        400,
        ("bad HTTP request", "method"),
        id="lowercase-method",
    ),
    pytest.param(
        lambda b: raw_request(headers=[*JSON.items(), ("Content-Length", "5")], body=_json_body(b)),
        400,
        ("Content-Length",),
        id="duplicate-content-length",
    ),
    pytest.param(
        lambda b: framed_by("Content-Length", "-5"),
        400,
        ("Content-Length",),
        id="negative-content-length",
    ),
    pytest.param(
        lambda b: framed_by("Content-Length", "12abc"),
        400,
        ("Content-Length",),
        id="content-length-not-a-number",
    ),
    pytest.param(
        lambda b: raw_request(headers=[*JSON.items(), ("X-Padding", "x" * 300_000)]),
        431,
        ("headers are larger than the limit",),
        id="header-of-300-kb",
    ),
    pytest.param(
        lambda b: raw_request(headers=JSON.items(), body=b"x" * (1024 * 1024)),
        413,
        ("larger than the limit", str(MAX_BODY)),
        id="body-of-1-mib",
    ),
    pytest.param(
        lambda b: framed_by("Content-Length", str(16 * MAX_BODY)),
        413,
        ("larger than the limit", str(MAX_BODY)),
        id="content-length-of-1-mib-announced",
    ),
    pytest.param(
        lambda b: framed_by(
            "Transfer-Encoding",
            "chunked",
            f"{MAX_BODY + 1:x}\r\n".encode() + b"x" * (MAX_BODY + 1) + b"\r\n0\r\n\r\n",
        ),
        413,
        ("larger than the limit", str(MAX_BODY)),
        id="chunked-body-over-the-limit",
    ),
    pytest.param(
        lambda b: framed_by("Transfer-Encoding", "chunked", b"zz\r\n"),
        400,
        ("bad HTTP request", "chunk"),
        id="chunked-body-with-a-bad-chunk-size",
    ),
    pytest.param(
        lambda b: framed_by("Transfer-Encoding", "identity", _json_body(b)),
        501,
        ("Transfer-Encoding",),
        id="transfer-encoding-identity",
    ),
    pytest.param(
        lambda b: raw_request(headers=[*JSON.items(), ("Bad Header", "x")], body=_json_body(b)),
        400,
        ("bad HTTP request", "header"),
        id="space-in-a-header-name",
    ),
    pytest.param(
        lambda b: raw_request(path="/v1/predict\xff", body=_json_body(b)),
        400,
        ("bad HTTP request", "URI"),
        id="path-not-utf8",
    ),
    pytest.param(
        lambda b: raw_request(path="/v1//predict", body=_json_body(b)),
        404,
        ("not found",),
        id="merged-slashes",
    ),
    pytest.param(
        lambda b: raw_request("OPTIONS", body=b""),
        405,
        ("not allowed",),
        id="options",
    ),
    pytest.param(
        lambda b: raw_request(headers=JSON.items(), body=b""),
        400,
        ("empty body",),
        id="content-length-0",
    ),
]


# --- Seeded fuzzing: requests made by a generator, the same for every tier ------------------

FORECAST_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:00:00Z")
_JUNK_VALUES: list[object] = [
    None, True, False, 0, -1, 1e308, -1e308, 2**70, 1e-320, "", "12.5", "\u0000", "\u202e",
    [], [1, [2, [3]]], {}, {"loads": []}, "x" * 300,
]  # fmt: skip


_CONTENT_TYPES = [
    "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;",
    "application/jsonx", "text/plain", "", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "application/json; charset=latin-1",
]  # fmt: skip
_HEADER_NAMES = [
    "Accept", "Content-Encoding", "Expect", "X-Forwarded-For", "Authorization", "Range",
    "If-None-Match", "Cookie",
]  # fmt: skip
_HEADER_VALUES = [
    "gzip", "*/*", "100-continue", "Bearer x", "bytes=0-1", "\u00e9t\u00e9", "a" * 2000,
    "1.2.3.4, ::1",
]  # fmt: skip
_PATHS = [
    "/v1/predict/", "/v1//predict", "/V1/PREDICT", "/v1/predict?x=1", "/v1/model",
    "/%2e%2e/etc/passwd", "/admin/v1/models", "/healthz", "/readyz", "/metrics",
    "/v1/predict%00", "/" + "a" * 3000,
]  # fmt: skip


def fuzz_timestamp(rng: random.Random) -> str:
    """A timestamp near ISO 8601: valid ones in and out of range, and malformed ones."""
    if rng.random() < 0.2:  # at the ends of datetime's range, where conversions overflow
        day = rng.choice(["0001-01-01T00", "9999-12-31T23", "0001-01-01T01", "9999-12-31T22"])
        return day + ":00:00" + rng.choice(["Z", "+01:00", "-01:00", "+23:59", "-23:59"])
    year = rng.choice(
        ["2017", "2017", "2000", "2100", "1999", "2101", "0001", "0000", "9999", "1970",
         f"{rng.randrange(10_000):04d}", str(rng.randrange(100_000)), "\uff12\uff10\uff11\uff17"]
    )  # fmt: skip
    month = rng.choice(["12", "12", "01", "02", "00", "13", "1"])
    day = rng.choice(["20", "20", "01", "28", "29", "31", "00", "32"])
    hour = rng.choice(["23", "23", "00", "12", "24", "7"])
    minute = rng.choice(["00", "00", "00", "30", "59", "60"])
    second = rng.choice(["", ":00", ":00", ":05", ":60", ":00.000000", ":00.0000001", ":00,0"])
    separator = rng.choice(["T", "T", "T", " ", "t", "_", ""])
    zone = rng.choice(
        ["Z", "Z", "", "+00:00", "-01:00", "+05:30", "+23:59", "-23:59", "+24:00", "z", "UTC",
         "+00:00:00.000001", "+0100", "+5"]
    )  # fmt: skip
    tail = rng.choice(["", "", "", "", "\u0000garbage", "\n", " ", "Z", "\u200b"])
    return f"{year}-{month}-{day}{separator}{hour}:{minute}{second}{zone}{tail}"


def _fuzz_loads(rng: random.Random, loads: list[float]) -> object:
    loads = list(loads)
    choice = rng.randrange(6)
    if choice == 0:  # a junk item
        loads[rng.randrange(len(loads))] = rng.choice(_JUNK_VALUES)
    elif choice == 1:  # another length
        loads = loads[: rng.choice([0, 1, 599])] if rng.random() < 0.5 else loads * 2
    elif choice == 2:  # extreme numbers, all of them valid JSON
        for _ in range(rng.randrange(1, 5)):
            loads[rng.randrange(len(loads))] = rng.choice([0, 0.0, -0.0, 1e300, 5e-324, 10**20])
    elif choice == 3:
        return rng.choice(_JUNK_VALUES)
    elif choice == 4:  # negative
        loads[rng.randrange(len(loads))] = -rng.random()
    return loads


def _fuzz_text(rng: random.Random, text: bytes) -> bytes:
    """Damages JSON text: cut, flipped, inserted or repeated bytes, a BOM, a duplicate key."""
    choice = rng.randrange(7)
    at = rng.randrange(len(text) + 1)
    if choice == 0:
        return text[:at]
    if choice == 1:
        flipped = bytearray(text)
        for _ in range(rng.randrange(1, 4)):
            flipped[rng.randrange(len(flipped))] = rng.randrange(256)
        return bytes(flipped)
    if choice == 2:
        junk = rng.choice([b"NaN", b"Infinity", b"\x00", b"\xff\xfe", b"}", b"]]]", b"1e999", b"-"])
        return text[:at] + junk + text[at:]
    if choice == 3:
        return b"\xef\xbb\xbf" + text
    if choice == 4:
        key = rng.choice([b'"loads"', b'"last_timestamp"', b'"timestamps"', b'"x"'])
        return b"{" + key + b": " + rng.choice([b"1", b"null", b"[]", b'"a"']) + b", " + text[1:]
    if choice == 5:
        depth = rng.choice([10, 1000, 20_000])
        return b"[" * depth + b"]" * depth
    return text + rng.choice([b" ", b"\n", b"{}", b"x"])


def fuzz_requests(seed: int, count: int, body: dict) -> list[tuple[str, dict]]:
    """``count`` requests made by a seeded generator from a valid prediction ``body``: keyword
    arguments of ``requests.request`` and of Flask's test client ``open``, each with an id."""
    rng = random.Random(seed)
    made: list[tuple[str, dict]] = []
    for n in range(count):
        method, path, headers = "POST", "/v1/predict", dict(JSON)
        payload: dict = dict(body)
        data: bytes | None = None
        kind = rng.choice(
            ["timestamp", "timestamp", "timestamp", "timestamps", "loads", "loads", "text",
             "text", "fields", "headers", "route"]
        )  # fmt: skip
        if kind == "timestamp":
            payload["last_timestamp"] = fuzz_timestamp(rng)
        elif kind == "timestamps":
            stamps = hourly(body["last_timestamp"])
            stamps[rng.choice([0, 299, 599])] = fuzz_timestamp(rng)
            payload = timestamps_body(body, stamps)
        elif kind == "loads":
            payload["loads"] = _fuzz_loads(rng, body["loads"])
        elif kind == "text":
            data = _fuzz_text(rng, json.dumps(payload).encode())
        elif kind == "fields":
            for _ in range(rng.randrange(1, 3)):
                key = rng.choice([*ALLOWED, "building", "", "loads ", "\u0000"])
                if key in payload and rng.random() < 0.5:
                    del payload[key]
                else:
                    payload[key] = rng.choice([*_JUNK_VALUES, body["loads"]])
        elif kind == "headers":
            headers["Content-Type"] = rng.choice(_CONTENT_TYPES)
            for _ in range(rng.randrange(3)):
                headers[rng.choice(_HEADER_NAMES)] = rng.choice(_HEADER_VALUES)
        else:
            method = rng.choice(["GET", "PUT", "PATCH", "DELETE", "POST", "OPTIONS"])
            path = rng.choice(_PATHS)
        if data is None:
            data = json.dumps(payload).encode()
        made.append((f"{n}-{kind}", {"method": method, "path": path, "data": data,
                                     "headers": headers}))  # fmt: skip
    return made


def fuzz_raw_requests(seed: int, count: int, body: dict) -> list[tuple[str, bytes]]:
    """``count`` complete HTTP requests as bytes, damaged at the HTTP level by a seeded
    generator: method, version, path, header lines and framing of a valid request."""
    rng = random.Random(seed)
    text = json.dumps(body).encode()
    made: list[tuple[str, bytes]] = []
    for n in range(count):
        method, path, version = "POST", "/v1/predict", "HTTP/1.1"
        headers = [("Content-Type", "application/json")]
        content_length: bool = True
        data = text
        kind = rng.choice(["method", "version", "path", "header", "header", "length", "chunked"])
        if kind == "method":
            method = rng.choice(["post", "Post", "P0ST", "POST ", "", "GET", "CONNECT", "PRI"])
        elif kind == "version":
            version = rng.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "HTTP/x", "http/1.1", ""])
        elif kind == "path":
            path = rng.choice(["/v1/predict\xff", "/v1/pre dict", "*", "http://h/v1/predict",
                               "v1/predict", "/v1/predict#x", "/%ff", "//v1/predict"])  # fmt: skip
        elif kind == "header":
            headers.append(
                rng.choice(
                    [("X Y", "1"), ("X-Y", "a\x00b"), ("X-Y", "a\rb"), ("", "v"), (":", "v"),
                     ("X-Long", "x" * rng.choice([8000, 70_000, 300_000])), ("Host", "other"),
                     ("Content-Type", "text/plain"), ("X-Fold", "a\r\n b"), ("Expect", "x")]
                )
            )  # fmt: skip
        elif kind == "length":
            content_length = False
            value = rng.choice(["-1", "abc", "1e3", "+10", " 10", "0x10", "10, 10", "",
                                "99999999999999999999", str(len(data) - 5)])  # fmt: skip
            headers.append(("Content-Length", value))
        else:
            content_length = False
            headers.append(("Transfer-Encoding", "chunked"))
            size = rng.choice([f"{len(data):x}", f"{len(data):X}", "zz", "-1", f"{len(data):x};e"])
            data = size.encode() + b"\r\n" + data + b"\r\n0\r\n\r\n"
        request = raw_request(
            method, path, headers, data, content_length=content_length, version=version
        )
        made.append((f"{n}-{kind}", request))
    return made


def check_fuzz_answer(path: str, status: int, headers: Mapping[str, str], text: str) -> None:
    """Whatever was asked: no 5xx, a JSON object (but the metrics), an error naming its status,
    and a forecast with four-digit years when it is one."""
    assert status < 500, (status, text[:300])
    if status == 200 and path.split("?")[0] == "/metrics":
        return  # Prometheus's text format
    assert headers.get("Content-Type", "").startswith("application/json"), (status, headers)
    answer = json.loads(text)
    assert isinstance(answer, dict), answer
    if status >= 400:
        assert answer.get("status") == status and answer.get("error"), answer
    elif "forecast_kwh" in answer:
        assert all(math.isfinite(v) for v in answer["forecast_kwh"]), answer
        assert all(FORECAST_STAMP.fullmatch(s) for s in answer["timestamps"]), answer


@dataclass
class FuzzAnswers:
    """The answers to one seed's fuzzed requests: how many of each status, and those that break
    a rule of :func:`check_fuzz_answer`, with what was sent."""

    seed: int
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[tuple[str, object, str]] = field(default_factory=list)

    def add(
        self, case: str, sent: object, path: str, status: int, headers: Mapping[str, str], text: str
    ) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        try:
            check_fuzz_answer(path, status, headers, text)
        except (AssertionError, ValueError) as exc:
            self.failures.append((case, sent, repr(exc)[:300]))

    def send_raw_requests(self, port: int, count: int, body: dict, timeout: float) -> None:
        """Sends :func:`fuzz_raw_requests` to 127.0.0.1:``port``, each on a new connection."""
        for case, request in fuzz_raw_requests(self.seed, count, body):
            answer = send_raw(port, request, timeout=timeout)
            self.add(case, request[:80], "", answer.status, answer.headers, answer.text)

    def assert_all_good(self) -> None:
        assert not self.failures, (
            f"{len(self.failures)} bad answers (seed {self.seed}): {self.failures[:5]}"
        )
