"""Bad prediction requests, and what the predictor must answer: one table for every tier.

Each case is a function of a valid body giving the request's keyword arguments (``json=``, or
``data=`` with ``headers=``: the same for ``requests`` and Flask's test client), the status, and
fragments that the "error" message must contain (so that it names the problem). The unit tier
sends them through ``create_app(...).test_client()``, the process tier over HTTP to a real server.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import pytest

JSON = {"Content-Type": "application/json"}
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


def timestamps_body(body: dict, stamps: object) -> dict:
    return {"loads": body["loads"], "timestamps": stamps}


def with_gap(stamps: list[str], at: int) -> list[str]:
    """Removes hour ``at`` and appends one at the end: still 600 stamps, one two-hour gap."""
    last = datetime.fromisoformat(stamps[-1].replace("Z", "+00:00")) + timedelta(hours=1)
    return [*stamps[:at], *stamps[at + 1 :], last.strftime("%Y-%m-%dT%H:%M:%SZ")]


def with_repeat(stamps: list[str], at: int) -> list[str]:
    return [*stamps[:at], stamps[at - 1], *stamps[at + 1 :]]


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
    pytest.param(
        lambda b: {"data": replace_load_text(b, 3, "NaN"), "headers": JSON},
        400,
        ("NaN", "finite"),
        id="nan-literal",
    ),
    pytest.param(
        lambda b: {"data": replace_load_text(b, 3, "Infinity"), "headers": JSON},
        400,
        ("Infinity", "finite"),
        id="infinity-literal",
    ),
    pytest.param(
        lambda b: {"data": replace_load_text(b, 3, "-Infinity"), "headers": JSON},
        400,
        ("-Infinity", "finite"),
        id="minus-infinity-literal",
    ),
    pytest.param(
        lambda b: {"data": replace_load_text(b, 3, "1e999"), "headers": JSON},
        400,
        ("'loads[3]'", "finite"),
        id="float-overflowing-to-infinity",
    ),
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
    pytest.param(
        lambda b: {"json": {**b, "last_timestamp": "2017-12-20T10:30:00Z"}},
        400,
        ("'last_timestamp'", "not on the hour"),
        id="last_timestamp-at-half-past",
    ),
    pytest.param(
        lambda b: {"json": {**b, "last_timestamp": "2017-12-20T23:00:05Z"}},
        400,
        ("'last_timestamp'", "not on the hour"),
        id="last_timestamp-with-seconds",
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
    pytest.param(
        lambda b: {"json": {**b, "last_timestamp": "20/12/2017 23:00"}},
        400,
        ("'last_timestamp'", "ISO 8601"),
        id="last_timestamp-not-iso-8601",
    ),
    pytest.param(
        lambda b: {"json": {**b, "last_timestamp": "yesterday"}},
        400,
        ("'last_timestamp'", "ISO 8601"),
        id="last_timestamp-a-word",
    ),
    pytest.param(
        lambda b: {"json": {**b, "last_timestamp": 1513810800}},
        400,
        ("'last_timestamp'", "ISO 8601"),
        id="last_timestamp-a-number",
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
        lambda b: {"json": {**b, "temperatures": [10.0] * 599}},
        400,
        ("'temperatures'", "600"),
        id="temperatures-wrong-length",
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
