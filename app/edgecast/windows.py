"""Cut an hourly series into (input window, forecast horizon) samples, split by time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class Samples:
    loads: np.ndarray  # (n, window) kWh, short gaps interpolated
    last_timestamps: np.ndarray  # (n,) epoch seconds of the last input hour
    targets: np.ndarray  # (n, horizon) kWh, observed values only
    temperatures: np.ndarray | None = None  # (n, window) degC

    def __len__(self) -> int:
        return len(self.loads)

    def take(self, index: np.ndarray) -> Samples:
        return Samples(
            self.loads[index],
            self.last_timestamps[index],
            self.targets[index],
            None if self.temperatures is None else self.temperatures[index],
        )


def fill_short_gaps(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly interpolates runs of at most ``max_gap`` missing hours between observations."""
    series = pd.Series(values)
    missing = series.isna()
    run_id = (missing != missing.shift()).cumsum()
    run_length = missing.groupby(run_id).transform("sum")
    interpolated = series.interpolate(limit_area="inside")
    fill = missing & (run_length <= max_gap)
    return np.where(fill, interpolated, series).astype(np.float64)


def make_samples(
    frame: pd.DataFrame,
    window: int,
    horizon: int,
    *,
    with_temperature: bool = False,
    max_gap: int = 3,
) -> Samples:
    """Every sample whose inputs and targets are complete (after filling short input gaps)."""
    raw = frame["load"].to_numpy(dtype=np.float64)
    filled = fill_short_gaps(raw, max_gap)
    seconds = frame.index.as_unit("s").asi8
    count = len(raw) - window - horizon + 1
    if count <= 0:
        raise ValueError(f"series of {len(raw)} hours is shorter than window + horizon")
    inputs = sliding_window_view(filled, window)[:count]
    targets = sliding_window_view(raw, horizon)[window : window + count]
    keep = np.isfinite(inputs).all(axis=1) & np.isfinite(targets).all(axis=1)
    temperatures = None
    if with_temperature:
        temps = fill_short_gaps(frame["temperature"].to_numpy(dtype=np.float64), 24)
        temperatures = sliding_window_view(temps, window)[:count]
        keep &= np.isfinite(temperatures).all(axis=1)
        temperatures = temperatures[keep].copy()
    last = seconds[window - 1 : window - 1 + count]
    return Samples(
        inputs[keep].copy(), last[keep].astype(np.int64), targets[keep].copy(), temperatures
    )


def split_by_time(samples: Samples, val_start: int, test_start: int) -> tuple[Samples, ...]:
    """Train: targets before val_start; validation: targets in [val_start, test_start);
    test: every target at or after test_start (time held out after the training period)."""
    first_target = samples.last_timestamps + 3600
    last_target = samples.last_timestamps + 3600 * samples.targets.shape[1]
    train = samples.take(np.flatnonzero(last_target < val_start))
    val = samples.take(np.flatnonzero((first_target >= val_start) & (last_target < test_start)))
    test = samples.take(np.flatnonzero(first_target >= test_start))
    return train, val, test
