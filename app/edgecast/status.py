"""What each predictor of the fleet serves and how well, from what predictors already expose.

A node's status is two reads of its predictor, ``interval`` seconds apart, each ``GET /v1/model``
and ``GET /metrics``: the second read says what it serves now; the differences of its counters
and latency histogram say how it served in between (prediction requests, 5xx answers, p99).
Nothing here opens a connection: the readers (a URL on the node, or the API server's service
proxy) are passed in, so that the status playbook and tests read the same way.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

PREDICT_ENDPOINT = "/v1/predict"
# label set -> value, per sample name (``edgecast_requests_total``, ``..._bucket``, ...)
Samples = dict[str, list[tuple[dict[str, str], float]]]


class StatusReadError(RuntimeError):
    """A predictor did not answer a status read."""


@dataclass(frozen=True)
class Reading:
    """One read of a predictor: its ``/v1/model`` answer and its metrics, and when."""

    at: float
    model: Mapping[str, Any]
    samples: Samples


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition as samples by name."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return samples


def _total(samples: Samples, name: str, match: Callable[[dict[str, str]], bool]) -> float:
    return sum(value for labels, value in samples.get(name, []) if match(labels))


def _value(samples: Samples, name: str) -> float | None:
    values = samples.get(name)
    return values[0][1] if values else None


def _buckets(samples: Samples, name: str) -> dict[float, float]:
    return {float(labels["le"]): value for labels, value in samples.get(f"{name}_bucket", [])}


def histogram_quantile(quantile: float, buckets: Mapping[float, float]) -> float | None:
    """``quantile`` of cumulative ``buckets`` (upper bound -> count), interpolated linearly in
    its bucket as Prometheus's ``histogram_quantile`` does; None without observations. A
    quantile in the ``+Inf`` bucket is the largest finite bound (the histogram knows no more)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = quantile * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class NodeStatus:
    """A row of the fleet status table (and an object of its JSON)."""

    node: str
    profile: str
    runtime: str | None = None
    model_id: str | None = None
    since: str | None = None
    previous_model_id: str | None = None
    parity_max_abs_diff: float | None = None
    ready: bool = False
    interval_seconds: float | None = None
    requests: int | None = None
    errors_5xx: int | None = None
    p99_ms: float | None = None
    live_mae_7d: float | None = None
    live_hours_7d: int | None = None
    # The serving bundle's held-out MAE (its manifest): what live accuracy drifts from.
    validation_mae: float | None = None
    # With shadow scoring: the previous model, and both models' live MAE over the same hours.
    shadow_model_id: str | None = None
    shadow_hours: int | None = None
    same_hours_mae: float | None = None
    shadow_same_hours_mae: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _live_7d(model: Mapping[str, Any]) -> Mapping[str, Any]:
    """The serving model's live 7-day figures from ``/v1/model``'s ``live_accuracy``, when the
    predictor scores its forecasts."""
    live = model.get("live_accuracy")
    if not isinstance(live, Mapping):
        return {}
    figures = live.get("models", {}).get(model.get("model_id"), live)
    window = figures.get("7d") if isinstance(figures, Mapping) else None
    return window if isinstance(window, Mapping) else {}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _validation_mae(model: Mapping[str, Any]) -> float | None:
    metrics = (model.get("manifest") or {}).get("metrics") or {}
    return _number((metrics.get("sbn") or {}).get("mae"))


def _live_mae(model: Mapping[str, Any]) -> float | None:
    return _number(_live_7d(model).get("mae"))


def _shadow(model: Mapping[str, Any]) -> dict[str, Any]:
    shadow = model.get("shadow")
    if not isinstance(shadow, Mapping):
        return {}
    same = shadow.get("same_hours") or {}
    serving, theirs = same.get("serving") or {}, same.get("shadow") or {}
    return {
        "shadow_model_id": shadow.get("model_id"),
        "shadow_hours": serving.get("hours"),
        "same_hours_mae": serving.get("mae"),
        "shadow_same_hours_mae": theirs.get("mae"),
    }


def node_status(
    node: str,
    profile: str,
    first: Reading,
    second: Reading,
    previous_model_id: str | None = None,
) -> NodeStatus:
    """The row of a node read twice: the second read's model, the differences between them."""
    model = second.model
    parity = model.get("parity") or {}
    previous = model.get("previous") or {}

    def predict(labels: dict[str, str]) -> bool:
        return labels.get("endpoint") == PREDICT_ENDPOINT

    def server_error(labels: dict[str, str]) -> bool:
        return predict(labels) and labels.get("status", "").startswith("5")

    name = "edgecast_requests_total"
    requests = _total(second.samples, name, predict) - _total(first.samples, name, predict)
    errors = _total(second.samples, name, server_error) - _total(first.samples, name, server_error)
    latency = "edgecast_predict_latency_seconds"
    before, after = _buckets(first.samples, latency), _buckets(second.samples, latency)
    p99 = histogram_quantile(0.99, {le: n - before.get(le, 0.0) for le, n in after.items()})
    # A restarted predictor starts its counters again: the interval's figures are then unknown.
    restarted = requests < 0 or errors < 0
    return NodeStatus(
        node=node,
        profile=profile,
        runtime=model.get("runtime"),
        model_id=model.get("model_id"),
        since=model.get("loaded_at"),
        previous_model_id=previous_model_id or previous.get("model_id"),
        parity_max_abs_diff=parity.get("max_abs_diff_kwh"),
        ready=_value(second.samples, "edgecast_ready") == 1.0,
        interval_seconds=round(second.at - first.at, 3),
        requests=None if restarted else int(requests),
        errors_5xx=None if restarted else int(errors),
        p99_ms=None if restarted or p99 is None else round(p99 * 1000, 3),
        live_mae_7d=_live_mae(model),
        live_hours_7d=_live_7d(model).get("hours"),
        validation_mae=_validation_mae(model),
        **_shadow(model),
    )


def read_twice(read: Callable[[], Reading], interval: float) -> tuple[Reading, Reading]:
    first = read()
    time.sleep(max(0.0, interval - (time.monotonic() - first.at)))
    return first, read()


def http_reader(url: str, timeout: float) -> Callable[[], Reading]:
    """Reads a predictor at ``url`` (``http://host:port``) directly."""
    base = url.rstrip("/")

    def get(path: str) -> str:
        try:
            with urllib.request.urlopen(f"{base}/{path}", timeout=timeout) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as exc:  # 503 while loading still says why, as JSON
            if path == "v1/model":
                return exc.read().decode()
            raise StatusReadError(f"GET {base}/{path}: HTTP {exc.code}") from exc
        except (OSError, ValueError) as exc:
            raise StatusReadError(f"GET {base}/{path}: {exc}") from exc

    def read() -> Reading:
        at = time.monotonic()
        return Reading(at, _json_object(get("v1/model")), parse_metrics(get("metrics")))

    return read


def service_reader(kube: Any, service: str) -> Callable[[], Reading]:
    """Reads a node's predictor through the API server's proxy of its Service (``kube`` an
    ``edgecast.deploy.kube.NamespacedApi``; the rollout Role's ``services/proxy`` get)."""

    def read() -> Reading:
        at = time.monotonic()
        model = kube.service_get(service, "http", "v1/model")
        return Reading(at, model, parse_metrics(kube.service_text(service, "http", "metrics")))

    return read


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StatusReadError(f"GET /v1/model did not answer JSON: {text[:120]!r}") from exc
    if not isinstance(value, dict):
        raise StatusReadError(f"GET /v1/model did not answer a JSON object: {text[:120]!r}")
    return value


COLUMNS: Sequence[tuple[str, str]] = (
    ("node", "NODE"),
    ("profile", "PROFILE"),
    ("runtime", "RUNTIME"),
    ("model_id", "MODEL"),
    ("since", "SINCE"),
    ("previous_model_id", "PREVIOUS"),
    ("parity_max_abs_diff", "PARITY"),
    ("ready", "READY"),
    ("requests", "REQ"),
    ("errors_5xx", "5XX"),
    ("p99_ms", "P99 MS"),
    ("live_mae_7d", "LIVE MAE 7D"),
)


def _cell(key: str, value: Any) -> str:
    if value is None or value == "":
        return "-"
    if key == "ready":
        return "yes" if value else "no"
    if key == "parity_max_abs_diff":
        return f"{value:.1e}"
    if key == "live_mae_7d":
        return f"{value:.3f}"
    if key == "since":
        return str(value).replace("+00:00", "Z")[:20]
    return str(value)


def table(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Rows as aligned text lines under a header; a node that could not be read shows why."""
    rows = list(rows)
    cells = [[title for _, title in COLUMNS]]
    cells += [[_cell(key, row.get(key)) for key, _ in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]
    lines += [f"{row['node']}: {row['error']}" for row in rows if row.get("error")]
    return lines
