"""Prometheus metrics of one predictor (a registry per app, so tests and apps do not share)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.swap_seconds = Gauge(
            "edgecast_last_swap_seconds",
            "Load, verify and swap time of the last model",
            registry=self.registry,
        )
