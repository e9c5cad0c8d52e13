"""The fleet status figures (edgecast.status) from a predictor's real metrics registry: the
interval's requests, 5xx answers and p99 from two scrapes, and the table a person reads."""

from __future__ import annotations

import math

import pytest
from prometheus_client import generate_latest

from edgecast.predictor.observability import LATENCY_BUCKETS, PredictorMetrics
from edgecast.status import (
    NodeStatus,
    Reading,
    histogram_quantile,
    node_status,
    parse_metrics,
    table,
)

MODEL = {
    "model_id": "sbn-b13-20260101T000000Z-abcdef12",
    "runtime": "litert",
    "loaded_at": "2026-12-02T03:00:00+00:00",
    "parity": {"max_abs_diff_kwh": 2.5e-6, "ok": True},
    "previous": {"model_id": "sbn-b13-20251201T000000Z-00000000"},
}


def scrape(metrics: PredictorMetrics, at: float, model: dict | None = None) -> Reading:
    return Reading(at, model or MODEL, parse_metrics(generate_latest(metrics.registry).decode()))


def serve(metrics: PredictorMetrics, latencies: list[float], statuses: list[int]) -> None:
    for latency in latencies:
        metrics.predict_latency.observe(latency)
    for status in statuses:
        metrics.requests.labels("/v1/predict", str(status)).inc()


def test_the_interval_figures_are_the_differences_of_two_scrapes():
    metrics = PredictorMetrics()
    metrics.ready.set(1)
    serve(metrics, [0.3] * 50, [200] * 50 + [503] * 7)  # before the first scrape: not counted
    metrics.requests.labels("/readyz", "200").inc(40)  # probes are not prediction requests
    first = scrape(metrics, 10.0)
    serve(metrics, [0.0015] * 99 + [0.04], [200] * 97 + [400] * 5 + [500] * 3)
    row = node_status("edge-1", "rpi", first, scrape(metrics, 15.5))
    assert (row.requests, row.errors_5xx) == (105, 3)
    assert row.interval_seconds == 5.5
    # rank 99 of 100 is the last of the 99 in (0.001, 0.002]: its upper bound, interpolated
    assert row.p99_ms == pytest.approx(2.0)
    assert row.ready is True
    assert (row.model_id, row.runtime, row.previous_model_id) == (
        MODEL["model_id"],
        "litert",
        MODEL["previous"]["model_id"],
    )
    assert row.parity_max_abs_diff == 2.5e-6
    assert row.live_mae_7d is None and row.error is None


def test_a_restarted_predictor_gives_unknown_interval_figures():
    busy = PredictorMetrics()
    serve(busy, [0.001] * 10, [200] * 10)
    first = scrape(busy, 0.0)
    row = node_status("edge-1", "jetson", first, scrape(PredictorMetrics(), 5.0))
    assert (row.requests, row.errors_5xx, row.p99_ms) == (None, None, None)
    assert row.ready is False


def test_an_idle_interval_has_no_p99():
    metrics = PredictorMetrics()
    row = node_status("edge-1", "rpi", scrape(metrics, 0.0), scrape(metrics, 1.0))
    assert (row.requests, row.errors_5xx, row.p99_ms) == (0, 0, None)


def test_the_service_record_names_the_previous_model_on_k3s():
    metrics = PredictorMetrics()
    model = {**MODEL, "previous": None}
    first, second = scrape(metrics, 0.0, model), scrape(metrics, 1.0, model)
    row = node_status("edge-1", "rpi", first, second, previous_model_id="sbn-old")
    assert row.previous_model_id == "sbn-old"


@pytest.mark.parametrize(
    ("quantile", "buckets", "expected"),
    [
        (0.5, {0.001: 0.0, 0.002: 10.0, math.inf: 10.0}, 0.0015),
        (0.99, {0.001: 50.0, 0.01: 100.0, math.inf: 100.0}, 0.001 + 0.009 * 49 / 50),
        (0.99, {0.001: 0.0, 1.0: 0.0, math.inf: 5.0}, 1.0),  # beyond the last bound
        (0.99, {0.001: 0.0, math.inf: 0.0}, None),
        (0.5, {}, None),
    ],
)
def test_histogram_quantile_interpolates_in_its_bucket(quantile, buckets, expected):
    value = histogram_quantile(quantile, buckets)
    assert value == (None if expected is None else pytest.approx(expected))


def test_the_latency_buckets_are_what_the_quantile_reads():
    metrics = PredictorMetrics()
    serve(metrics, [LATENCY_BUCKETS[-1] * 2], [200])
    row = node_status("edge-1", "rpi", scrape(PredictorMetrics(), 0.0), scrape(metrics, 1.0))
    assert row.p99_ms == pytest.approx(LATENCY_BUCKETS[-1] * 1000)


def test_live_accuracy_is_read_when_the_predictor_scores_forecasts():
    metrics = PredictorMetrics()
    live = {"models": {MODEL["model_id"]: {"7d": {"mae": 12.345, "pairs": 40, "hours": 30}}}}
    manifest = {"metrics": {"sbn": {"mae": 9.5}, "seasonal_naive": {"mae": 11.0}}}
    model = {**MODEL, "live_accuracy": live, "manifest": manifest}
    row = node_status("edge-1", "rpi", scrape(metrics, 0.0, model), scrape(metrics, 1.0, model))
    assert (row.live_mae_7d, row.live_hours_7d, row.validation_mae) == (12.345, 30, 9.5)


def test_the_table_aligns_rows_and_says_why_a_node_was_not_read():
    metrics = PredictorMetrics()
    metrics.ready.set(1)
    row = node_status("edge-1", "rpi", scrape(metrics, 0.0), scrape(metrics, 2.0)).to_dict()
    unread = NodeStatus("edge-2", "jetson", error="not read: connection refused").to_dict()
    lines = table([row, unread])
    header, first, second, why = lines
    assert header.split() == [
        "NODE", "PROFILE", "RUNTIME", "MODEL", "SINCE", "PREVIOUS", "PARITY", "READY",
        "REQ", "5XX", "P99", "MS", "LIVE", "MAE", "7D",
    ]  # fmt: skip
    assert first.split()[:8] == [
        "edge-1", "rpi", "litert", MODEL["model_id"], "2026-12-02T03:00:00Z",
        MODEL["previous"]["model_id"], "2.5e-06", "yes",
    ]  # fmt: skip
    assert first.index(MODEL["model_id"]) == header.index("MODEL")
    assert second.split()[:2] == ["edge-2", "jetson"] and second.split()[7] == "no"
    assert why == "edge-2: not read: connection refused"


def test_shadow_figures_are_read_when_the_predictor_scores_one():
    metrics = PredictorMetrics()
    shadow = {
        "model_id": "sbn-old",
        "same_hours": {"serving": {"mae": 3.5, "hours": 30}, "shadow": {"mae": 4.25, "hours": 30}},
    }
    model = {**MODEL, "shadow": shadow}
    row = node_status("edge-1", "rpi", scrape(metrics, 0.0, model), scrape(metrics, 1.0, model))
    assert (row.shadow_model_id, row.shadow_hours) == ("sbn-old", 30)
    assert (row.same_hours_mae, row.shadow_same_hours_mae) == (3.5, 4.25)
    plain = node_status("edge-1", "rpi", scrape(metrics, 0.0), scrape(metrics, 1.0))
    assert plain.shadow_model_id is None and plain.same_hours_mae is None
