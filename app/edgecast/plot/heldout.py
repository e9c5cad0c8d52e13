"""A bundle's held-out forecasts, made again from its weights, beside the actuals and baselines.

A bundle keeps its held-out figures, not its held-out forecasts, so they are made again here:
the held-out and training periods the manifest records are cut from the data folder with the
code training used (``make_samples``, ``split_by_time``), the bundle's model forecasts every
held-out window, and seasonal naive and the ridge baseline (fitted on the training period, as
training fits it) forecast the same windows. The figures then match the manifest's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from edgecast.baselines import LinearBaseline, seasonal_naive
from edgecast.data import DataError, load_building
from edgecast.forecaster import Forecaster
from edgecast.metrics import accuracy
from edgecast.windows import make_samples, split_by_time

HOUR = 3600
FORECASTS = ("sbn", "seasonal_naive", "linear")


class HeldOutError(ValueError):
    """The bundle's held-out period cannot be made again from the data given."""


@dataclass(frozen=True)
class HeldOut:
    """Every held-out window: its last input hour, actuals and each forecast (n, horizon)."""

    model_id: str
    building: str
    last_timestamps: np.ndarray
    actuals: np.ndarray
    forecasts: dict[str, np.ndarray]

    @property
    def horizon(self) -> int:
        return int(self.actuals.shape[1])

    @property
    def first_hour(self) -> int:
        return int(self.last_timestamps.min()) + HOUR

    @property
    def last_hour(self) -> int:
        return int(self.last_timestamps.max()) + self.horizon * HOUR

    def metrics(self) -> dict[str, dict[str, float]]:
        """MAE, RMSE, MAPE and CV(RMSE) over every held-out window and step, as training's."""
        return {name: accuracy(self.actuals, f) for name, f in self.forecasts.items()}

    def check_step(self, step: int) -> None:
        if not 1 <= step <= self.horizon:
            raise HeldOutError(f"--step must be between 1 and the horizon, {self.horizon}")

    def at_step(self, step: int, start: int, end: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Hours in [start, end) and, for each, the actual and every forecast made ``step`` hours
        before it; hours without a complete window are NaN, so that a chart shows the gap."""
        self.check_step(step)
        hours = np.arange(start, end, HOUR, dtype=np.int64)
        found = np.searchsorted(hours, self.last_timestamps + step * HOUR)
        inside = (found < len(hours)) & (
            hours[np.minimum(found, len(hours) - 1)] == self.last_timestamps + step * HOUR
        )
        series = {"actual": self.actuals, **self.forecasts}
        values = {}
        for name, table in series.items():
            column = np.full(len(hours), np.nan)
            column[found[inside]] = table[inside, step - 1]
            values[name] = column
        return hours, values


def _moment(text: object, what: str) -> int:
    try:
        return int(pd.Timestamp(str(text)).timestamp())
    except ValueError:
        raise HeldOutError(f"the manifest's {what} is not a time: {text!r}") from None


def held_out(forecaster: Forecaster, data_dir: Path) -> HeldOut:
    """The held-out period of the forecaster's bundle, forecast by its model and the baselines."""
    bundle = forecaster.bundle
    config = forecaster.config
    try:
        training = bundle.manifest["training"]
        building = str(training["data"]["building"])  # type: ignore[index]
        data_end = _moment(training["data"]["end"], "training data end")  # type: ignore[index]
        val_start = _moment(training["validation"]["first_target"], "validation start")  # type: ignore[index]
        test_start = _moment(training["test"]["first_target"], "held-out start")  # type: ignore[index]
    except (KeyError, TypeError):
        raise HeldOutError(
            f"{bundle.model_id}: its manifest records no training and held-out periods"
        ) from None
    try:
        frame = load_building(
            building,
            data_dir,
            weather_station="bedford" if config.use_temperature else None,
            until=pd.Timestamp(data_end + HOUR, unit="s", tz="UTC"),
        )
        samples = make_samples(
            frame, config.window, config.horizon, with_temperature=config.use_temperature
        )
    except DataError as exc:
        raise HeldOutError(str(exc)) from None
    train, _, test = split_by_time(samples, val_start, test_start)
    if len(test) == 0 or len(train) == 0:
        shown = datetime.fromtimestamp(test_start, UTC).strftime("%Y-%m-%d")
        raise HeldOutError(
            f"{data_dir} holds no complete {building} windows for the training period and the "
            f"held-out period from {shown} that {bundle.model_id} was trained with"
        )
    linear = LinearBaseline(config.horizon)
    linear.fit(train.loads, train.last_timestamps, train.targets)
    forecasts = {
        "sbn": forecaster.forecast_batch(test.loads, test.last_timestamps, test.temperatures),
        "seasonal_naive": seasonal_naive(test.loads, config.horizon),
        "linear": linear.predict(test.loads, test.last_timestamps),
    }
    return HeldOut(bundle.model_id, building, test.last_timestamps, test.targets, forecasts)
