"""Calendar features, baselines, metrics and the network's weight layout."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from edgecast.architecture import ArchitectureError, SBNConfig, expected_weight_shapes, step_indices
from edgecast.baselines import LinearBaseline, seasonal_naive
from edgecast.calendar import calendar_features, horizon_calendar, horizon_timestamps
from edgecast.metrics import accuracy


def stamp(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_calendar_features_know_the_hour_and_the_weekend():
    monday_noon, sunday_midnight = stamp("2017-01-02T12:00:00"), stamp("2017-01-08T00:00:00")
    features = calendar_features(np.array([monday_noon, sunday_midnight]))
    assert features[0, 0] == pytest.approx(0, abs=1e-12)  # sin(noon)
    assert features[0, 1] == pytest.approx(-1)  # cos(noon)
    assert features[0, 4] == 0 and features[1, 4] == 1
    assert horizon_timestamps(monday_noon, 3).tolist() == [
        monday_noon + 3600,
        monday_noon + 7200,
        monday_noon + 10800,
    ]


def test_calendar_features_are_those_of_the_formula_at_every_hour():
    """The weekly lookup table gives the formula's values bit for bit, from 1968 to 2000."""
    hours = np.arange(-2 * 8766, 30 * 8766, dtype=np.int64)
    hour_of_day = (hours % 24).astype(np.float64)
    day_of_week = ((hours // 24 + 3) % 7).astype(np.float64)
    day_angle = 2 * np.pi * hour_of_day / 24
    week_angle = 2 * np.pi * (day_of_week + hour_of_day / 24) / 7
    weekend = (day_of_week >= 5).astype(np.float64)
    formula = np.stack(
        [np.sin(day_angle), np.cos(day_angle), np.sin(week_angle), np.cos(week_angle), weekend],
        axis=-1,
    )
    assert np.array_equal(calendar_features(hours * 3600), formula)


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5)])
@pytest.mark.parametrize("horizon", [1, 24, 200])
def test_the_horizons_calendar_is_the_features_of_its_timestamps(
    shape: tuple[int, ...], horizon: int
) -> None:
    """The network's calendar input, looked up in one step, equals the features of each
    horizon timestamp (off the hour and before 1970 too)."""
    last = np.random.default_rng(horizon).integers(-(10**9), 2 * 10**9, size=shape)
    expected = calendar_features(horizon_timestamps(last, horizon)).astype(np.float32)
    got = horizon_calendar(last, horizon)
    assert got.dtype == np.float32 and got.shape == (*shape, horizon, 5)
    assert np.array_equal(got, expected)


def test_lags_point_at_the_same_hour_on_previous_days():
    config = SBNConfig(window=600, horizon=48, lag_days=3, recent_hours=2)
    lags = step_indices(config)[:, :3]
    assert step_indices(config)[:, 3:].tolist() == [[598, 599]] * 48
    # Step 0 forecasts hour 600 (one after the last input, index 599): same hour = 576, 552, ...
    assert lags[0].tolist() == [576, 552, 528]
    # Step 30 forecasts hour 630: the newest same hour inside the window is 582.
    assert lags[30].tolist() == [582, 558, 534]
    assert ((600 + np.arange(48)[:, None] - lags) % 24 == 0).all()


def test_a_window_too_short_for_the_lags_is_refused_with_the_minimum():
    with pytest.raises(ArchitectureError, match="at least 504 hours"):
        SBNConfig(window=400, lag_days=21)


def test_keras_network_has_exactly_the_framework_free_layout():
    from edgecast.sbn import build_sbn

    for config in (
        SBNConfig(),
        SBNConfig(window=336, lag_days=10, horizon=36, use_temperature=True),
    ):
        model = build_sbn(config)
        assert {v.path: tuple(v.shape) for v in model.weights} == expected_weight_shapes(config)


def test_seasonal_naive_repeats_last_week():
    loads = np.arange(400, dtype=float)[None, :]
    forecast = seasonal_naive(loads, horizon=24)
    assert forecast[0].tolist() == list(np.arange(400 - 168, 400 - 168 + 24, dtype=float))


def test_linear_baseline_learns_a_daily_pattern():
    hours = np.arange(24 * 200)
    series = 10 + 3 * np.sin(hours * 2 * np.pi / 24)
    windows = np.stack([series[i : i + 168] for i in range(0, 24 * 150, 7)])
    targets = np.stack([series[i + 168 : i + 192] for i in range(0, 24 * 150, 7)])
    last = np.array([(i + 167) * 3600 for i in range(0, 24 * 150, 7)])
    model = LinearBaseline(horizon=24)
    model.fit(windows, last, targets)
    assert np.abs(model.predict(windows, last) - targets).max() < 0.05


def test_accuracy_figures():
    actual = np.array([10.0, 20.0, np.nan])
    result = accuracy(actual, np.array([11.0, 18.0, 5.0]))
    assert result["n"] == 2
    assert result["mae"] == pytest.approx(1.5)
    assert result["rmse"] == pytest.approx(np.sqrt(2.5))
    assert result["mape"] == pytest.approx(10.0)
    assert result["cv_rmse"] == pytest.approx(np.sqrt(2.5) / 15 * 100)
