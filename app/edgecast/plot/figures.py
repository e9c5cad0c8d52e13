"""What ``edgecast plot`` shows: a bundle's held-out weeks, and a request's forecast."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from edgecast.baselines import WEEK_HOURS, seasonal_naive
from edgecast.plot.chart import Chart, Line, epoch_hours
from edgecast.plot.heldout import HOUR, HeldOut
from edgecast.plot.request import RequestForecast

MODEL_COLOR, NAIVE_COLOR, LINEAR_COLOR = "tab:blue", "tab:orange", "tab:green"
LABELS = {"sbn": "model", "seasonal_naive": "seasonal naive", "linear": "linear (ridge)"}


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def _mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    both = np.isfinite(actual) & np.isfinite(forecast)
    return float(np.mean(np.abs(forecast[both] - actual[both]))) if both.any() else float("nan")


def bundle_chart(held: HeldOut, step: int, start: int, end: int) -> Chart:
    """Hours [start, end) of the held-out period, each with the actual and the forecasts made
    ``step`` hours before it; the title has the MAE over the whole held-out period."""
    hours, values = held.at_step(step, start, end)
    whole = held.metrics()
    styles = {
        "sbn": (MODEL_COLOR, "-", 1.6),
        "seasonal_naive": (NAIVE_COLOR, "--", 1.0),
        "linear": (LINEAR_COLOR, ":", 1.2),
    }
    times = epoch_hours(hours)
    lines = [Line("actual", times, values["actual"], "black", "-", 1.4)]
    for name, (color, style, width) in styles.items():
        mae = _mae(values["actual"], values[name])
        lines.append(
            Line(
                f"{LABELS[name]} (MAE {mae:.2f} kWh here)", times, values[name], color, style, width
            )
        )
    title = (
        f"{held.model_id}: building {held.building}, held-out forecasts {step} h ahead\n"
        f"MAE over the whole held-out period ({_day(held.first_hour)} to "
        f"{_day(held.last_hour)}, every step): model {whole['sbn']['mae']:.2f}, seasonal naive "
        f"{whole['seasonal_naive']['mae']:.2f}, linear {whole['linear']['mae']:.2f} kWh"
    )
    return Chart(title=title, lines=tuple(lines))


def request_chart(answer: RequestForecast, hours: int) -> Chart:
    """The request's last ``hours`` loads, the forecast after them and, where the request holds
    a week, seasonal naive's (the same hours last week) for comparison."""
    shown = answer.loads[-hours:]
    last = answer.last_timestamp
    history = epoch_hours(np.arange(last - (len(shown) - 1) * HOUR, last + HOUR, HOUR))
    horizon = len(answer.forecast)
    ahead = epoch_hours(np.arange(last + HOUR, last + (horizon + 1) * HOUR, HOUR))
    lines = [
        Line(f"request's loads (last {len(shown)} h)", history, shown, "black", "-", 1.4),
        Line(f"forecast ({horizon} h)", ahead, answer.forecast, MODEL_COLOR, "-", 1.8, "o"),
    ]
    if len(answer.loads) >= WEEK_HOURS:
        naive = seasonal_naive(answer.loads, horizon)
        lines.append(Line("seasonal naive", ahead, naive, NAIVE_COLOR, "--", 1.0))
    series = f", series {answer.series}" if answer.series else ""
    stamp = datetime.fromtimestamp(last, UTC).strftime("%Y-%m-%dT%H:%MZ")
    title = (
        f"{answer.model_id} ({answer.runtime} runtime){series}\n"
        f"forecast after {stamp}: {float(np.sum(answer.forecast)):.1f} kWh over {horizon} h"
    )
    return Chart(
        title=title,
        lines=tuple(lines),
        divider=epoch_hours(np.asarray([last]))[0],
        divider_label="last hour of the request",
    )
