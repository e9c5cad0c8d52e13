"""Forecast accuracy measures used to compare the model with its baselines."""

from __future__ import annotations

import numpy as np


def accuracy(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """MAE and RMSE in kWh, MAPE and CV(RMSE) in percent, over the finite targets."""
    mask = np.isfinite(actual) & np.isfinite(forecast)
    if not mask.any():
        raise ValueError("no finite target to evaluate")
    a, f = actual[mask], forecast[mask]
    err = f - a
    rmse = float(np.sqrt(np.mean(err**2)))
    nonzero = a != 0
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": rmse,
        "mape": float(np.mean(np.abs(err[nonzero] / a[nonzero])) * 100),
        "cv_rmse": rmse / float(np.mean(a)) * 100,
        "n": int(mask.sum()),
    }
