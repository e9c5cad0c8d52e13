"""Prometheus metrics of one predictor (a registry per app, so tests and apps do not share)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgecast.predictor.live_accuracy import LiveAccuracy

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class PredictorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgecast_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.predict_latency = Histogram(
            "edgecast_predict_latency_seconds",
            "Time to answer a valid prediction request",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inflight = Gauge(
            "edgecast_inflight_requests", "Requests being processed", registry=self.registry
        )
        self.ready = Gauge(
            "edgecast_ready", "1 when a parity-checked model serves", registry=self.registry
        )
        self.model_info = Gauge(
            "edgecast_model_info",
            "The serving model",
            ["model_id", "runtime"],
            registry=self.registry,
        )
        self.parity_diff = Gauge(
            "edgecast_parity_max_abs_diff_kwh",
            "Largest difference from the bundle's reference forecasts",
            registry=self.registry,
        )
        self.swaps = Counter(
            "edgecast_model_swaps", "Model swaps by result", ["result"], registry=self.registry
        )
        self.open_connections = Gauge(
            "edgecast_open_connections", "Open client connections", registry=self.registry
        )
        self.connections_closed = Counter(
            "edgecast_connections_closed",
            "Connections the predictor closed: idle_timeout, request_timeout, evicted (to make "
            "room at the connection limit)",
            ["reason"],
            registry=self.registry,
        )
        self.shadow_requests = Counter(
            "edgecast_shadow_requests",
            "Requests for the previous model to forecast in shadow, by result: scored, skipped "
            "(over the shadow's rate), dropped (the shadow fell behind, or the model cannot "
            "take the request), failed",
            ["result"],
            registry=self.registry,
        )
        self.swap_seconds = Gauge(
            "edgecast_last_swap_seconds",
            "Load, verify and swap time of the last model",
            registry=self.registry,
        )

    def watch_live_accuracy(self, scorer: LiveAccuracy) -> None:
        self.registry.register(LiveAccuracyCollector(scorer))


class LiveAccuracyCollector(Collector):
    """Live accuracy by model_id and window, computed when scraped (requests only record)."""

    def __init__(self, scorer: LiveAccuracy) -> None:
        self.scorer = scorer

    def collect(self) -> Iterator[Metric]:
        snapshot = self.scorer.snapshot()
        labels = ["model_id", "window"]
        mae = GaugeMetricFamily(
            "edgecast_live_mae_kwh", "Mean absolute error of scored forecasts", labels=labels
        )
        mape = GaugeMetricFamily(
            "edgecast_live_mape_percent",
            "Mean absolute percentage error of scored forecasts (actuals of 0 left out)",
            labels=labels,
        )
        bias = GaugeMetricFamily(
            "edgecast_live_bias_kwh", "Mean of forecast minus actual", labels=labels
        )
        pairs = GaugeMetricFamily(
            "edgecast_live_pairs", "(forecast, actual) pairs in the window", labels=labels
        )
        hours = GaugeMetricFamily(
            "edgecast_live_hours", "Hours scored in the window", labels=labels
        )
        scored = CounterMetricFamily(
            "edgecast_live_scored_pairs",
            "(forecast, actual) pairs scored; a pair re-scored after a correction counts once",
            labels=["model_id"],
        )
        corrections = CounterMetricFamily(
            "edgecast_live_corrections",
            "Scored hours scored again because a later request carried a different actual",
            labels=["model_id"],
        )
        for model_id, accuracy in snapshot.models.items():
            for window, figures in accuracy.windows.items():
                for family, value in (
                    (mae, figures.mae),
                    (mape, figures.mape),
                    (bias, figures.bias),
                ):
                    if value is not None:
                        family.add_metric([model_id, window], value)
                pairs.add_metric([model_id, window], figures.pairs)
                hours.add_metric([model_id, window], figures.hours)
            scored.add_metric([model_id], accuracy.pairs_scored)
            corrections.add_metric([model_id], accuracy.corrections)
        yield from (mae, mape, bias, pairs, hours, scored, corrections)
        yield GaugeMetricFamily(
            "edgecast_live_series", "Series whose forecasts are remembered", snapshot.series
        )
        yield GaugeMetricFamily(
            "edgecast_live_forecasts_kept",
            "Requests' forecasts remembered for scoring, over all series and models",
            snapshot.forecasts_kept,
        )
        restarts = CounterMetricFamily(
            "edgecast_live_series_events",
            "Series restarted (every hour of a request was final: its clock jumped back) or "
            "evicted (the least recently used, beyond the limit)",
            labels=["event"],
        )
        restarts.add_metric(["restarted"], snapshot.series_restarted)
        restarts.add_metric(["evicted"], snapshot.series_evicted)
        yield restarts
