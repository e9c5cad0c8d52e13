"""The rolling day-ahead protocol: a forecast every midnight from the hours before it.

A bundle is judged the way the edge uses it: loaded through the verified path (digests,
layout, parity gate) and asked one window at a time, exactly as the predictor asks it, so the
forecasts here are the forecasts a node would serve. Seasonal naive and the ridge baseline are
scored on the same days; the ridge is fitted on the hours before the evaluated period.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from edgecast.baselines import LinearBaseline, seasonal_naive
from edgecast.data import DataError, load_building
from edgecast.forecaster import Forecaster
from edgecast.metrics import accuracy
from edgecast.windows import Samples, make_samples

HOUR = 3600
DAY = 24 * HOUR


class EvaluationError(ValueError):
    """The bundle and the data cannot be evaluated together."""


@dataclass(frozen=True)
class BuildingEvaluation:
    """One building's figures over the evaluated days, and the model's forecasts."""

    building: str
    model_id: str
    runtime: str
    days: int
    metrics: dict[str, dict[str, float]]
    last_timestamps: np.ndarray
    forecasts: np.ndarray

    @property
    def ratio_to_naive(self) -> float:
        return self.metrics["sbn"]["mae"] / self.metrics["seasonal_naive"]["mae"]

    @property
    def ratio_to_linear(self) -> float:
        return self.metrics["sbn"]["mae"] / self.metrics["linear"]["mae"]

    def to_dict(self) -> dict[str, object]:
        return {
            "building": self.building,
            "model_id": self.model_id,
            "runtime": self.runtime,
            "days": self.days,
            "metrics": self.metrics,
            "ratio_to_seasonal_naive": self.ratio_to_naive,
            "ratio_to_linear": self.ratio_to_linear,
        }


def _midnight_samples(samples: Samples, start: int, end: int, horizon: int) -> Samples:
    """Samples whose forecast starts at a midnight in [start, end) and ends before ``end``."""
    first = samples.last_timestamps + HOUR
    keep = (first % DAY == 0) & (first >= start) & (first + horizon * HOUR <= end)
    return samples.take(np.flatnonzero(keep))


def evaluate_building(
    forecaster: Forecaster,
    building: str,
    data_dir: Path,
    start: datetime,
    end: datetime,
) -> BuildingEvaluation:
    """Scores the forecaster on ``building`` for every midnight from ``start`` to ``end``."""
    config = forecaster.config
    weather = "bedford" if config.use_temperature else None
    try:
        frame = load_building(building, data_dir, weather_station=weather, until=pd.Timestamp(end))
    except DataError as exc:
        raise EvaluationError(str(exc)) from None
    samples = make_samples(
        frame, config.window, config.horizon, with_temperature=config.use_temperature
    )
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    days = _midnight_samples(samples, start_s, end_s, config.horizon)
    if len(days) == 0:
        raise EvaluationError(
            f"{building}: no day from {start:%Y-%m-%d} to {end:%Y-%m-%d} has a complete "
            f"{config.window}-hour window and {config.horizon} observed hours after it"
        )
    history = samples.take(
        np.flatnonzero(samples.last_timestamps + config.horizon * HOUR < start_s)
    )
    if len(history) == 0:
        raise EvaluationError(
            f"{building}: no complete sample before {start:%Y-%m-%d} to fit the linear baseline on"
        )
    linear = LinearBaseline(config.horizon)
    linear.fit(history.loads, history.last_timestamps, history.targets)
    # One window at a time, as the predictor answers a request.
    forecasts = np.stack(
        [
            forecaster.forecast(
                days.loads[i],
                int(days.last_timestamps[i]),
                None if days.temperatures is None else days.temperatures[i],
            )
            for i in range(len(days))
        ]
    )
    metrics = {
        "sbn": accuracy(days.targets, forecasts),
        "seasonal_naive": accuracy(days.targets, seasonal_naive(days.loads, config.horizon)),
        "linear": accuracy(days.targets, linear.predict(days.loads, days.last_timestamps)),
    }
    return BuildingEvaluation(
        building=building,
        model_id=forecaster.model_id,
        runtime=forecaster.runtime.name,
        days=len(days),
        metrics=metrics,
        last_timestamps=days.last_timestamps,
        forecasts=forecasts,
    )


def medians(rows: list[BuildingEvaluation]) -> dict[str, float]:
    """The figures a multi-building run is judged by."""
    return {
        "mae_ratio_to_seasonal_naive": statistics.median(r.ratio_to_naive for r in rows),
        "mae_ratio_to_linear": statistics.median(r.ratio_to_linear for r in rows),
        "mape": statistics.median(r.metrics["sbn"]["mape"] for r in rows),
        "seasonal_naive_mape": statistics.median(r.metrics["seasonal_naive"]["mape"] for r in rows),
        "linear_mape": statistics.median(r.metrics["linear"]["mape"] for r in rows),
        "cv_rmse": statistics.median(r.metrics["sbn"]["cv_rmse"] for r in rows),
        "worse_than_naive": sum(r.ratio_to_naive > 1.0 for r in rows),
        "max_ratio_to_seasonal_naive": max(r.ratio_to_naive for r in rows),
    }


def format_table(rows: list[BuildingEvaluation]) -> str:
    lines = [
        f"{'building':<10}{'days':>5}{'MAE kWh':>10}{'RMSE kWh':>10}{'MAPE %':>8}"
        f"{'CV(RMSE) %':>11}{'naive MAPE %':>13}{'linear MAPE %':>14}{'/naive':>8}{'/linear':>8}"
    ]
    for r in rows:
        m = r.metrics
        lines.append(
            f"{r.building:<10}{r.days:>5}{m['sbn']['mae']:>10.3f}{m['sbn']['rmse']:>10.3f}"
            f"{m['sbn']['mape']:>8.2f}{m['sbn']['cv_rmse']:>11.2f}"
            f"{m['seasonal_naive']['mape']:>13.2f}{m['linear']['mape']:>14.2f}"
            f"{r.ratio_to_naive:>8.3f}{r.ratio_to_linear:>8.3f}"
        )
    if len(rows) > 1:
        med = medians(rows)
        lines.append(
            f"median over {len(rows)} buildings: MAE {med['mae_ratio_to_seasonal_naive']:.3f}x "
            f"seasonal naive, {med['mae_ratio_to_linear']:.3f}x linear; MAPE {med['mape']:.2f} % "
            f"(naive {med['seasonal_naive_mape']:.2f} %, linear {med['linear_mape']:.2f} %); "
            f"worse than naive on {med['worse_than_naive']}, at most "
            f"{med['max_ratio_to_seasonal_naive']:.3f}x"
        )
    return "\n".join(lines)
