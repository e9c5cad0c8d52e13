"""Simple forecasts the network has to beat on held-out time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecast.calendar import calendar_features, horizon_timestamps

WEEK_HOURS = 168


def seasonal_naive(loads: np.ndarray, horizon: int, season: int = WEEK_HOURS) -> np.ndarray:
    """Same hour last week: forecast for last+h is the observation at last+h-season."""
    window = loads.shape[-1]
    if window < season:
        raise ValueError(f"seasonal naive needs a window of at least {season} hours")
    steps = np.arange(1, horizon + 1)
    index = window - 1 + steps - season * np.ceil(steps / season).astype(int)
    return loads[..., index]


@dataclass
class LinearBaseline:
    """Ridge regression from the last week of loads and the horizon's calendar to the horizon."""

    horizon: int
    history: int = WEEK_HOURS
    ridge: float = 1.0
    coef: np.ndarray | None = None

    def _design(self, loads: np.ndarray, last_timestamps: np.ndarray) -> np.ndarray:
        calendar = calendar_features(horizon_timestamps(last_timestamps, self.horizon))
        return np.concatenate(
            [
                loads[:, -self.history :],
                calendar.reshape(len(loads), -1),
                np.ones((len(loads), 1)),
            ],
            axis=1,
        )

    def fit(self, loads: np.ndarray, last_timestamps: np.ndarray, targets: np.ndarray) -> None:
        x = self._design(loads, last_timestamps)
        penalty = self.ridge * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0
        self.coef = np.linalg.solve(x.T @ x + penalty, x.T @ targets)

    def predict(self, loads: np.ndarray, last_timestamps: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise RuntimeError("fit the baseline first")
        return self._design(loads, last_timestamps) @ self.coef
