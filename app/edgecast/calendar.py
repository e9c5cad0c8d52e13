"""Calendar features from UTC timestamps (epoch seconds), without pandas on the hot path."""

from __future__ import annotations

import numpy as np

SECONDS_PER_HOUR = 3600
CALENDAR_FEATURES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "weekend")


def _features_of_hours(hours: np.ndarray) -> np.ndarray:
    hour_of_day = (hours % 24).astype(np.float64)
    # 1970-01-01 was a Thursday; Monday = 0.
    day_of_week = ((hours // 24 + 3) % 7).astype(np.float64)
    day_angle = 2 * np.pi * hour_of_day / 24
    week_angle = 2 * np.pi * (day_of_week + hour_of_day / 24) / 7
    return np.stack(
        [
            np.sin(day_angle),
            np.cos(day_angle),
            np.sin(week_angle),
            np.cos(week_angle),
            (day_of_week >= 5).astype(np.float64),
        ],
        axis=-1,
    )


HOURS_PER_WEEK = 168
# Every feature repeats weekly: the features of the week's hours, computed once, then looked up
# (the same values, bit for bit, at a fraction of the cost per request).
_WEEK = _features_of_hours(np.arange(HOURS_PER_WEEK, dtype=np.int64))


def calendar_features(timestamps: np.ndarray) -> np.ndarray:
    """Features for each timestamp: time of day and day of week on the circle, weekend flag."""
    hours = (np.asarray(timestamps) // SECONDS_PER_HOUR).astype(np.int64)
    return _WEEK[hours % HOURS_PER_WEEK]


def horizon_timestamps(last_timestamp: np.ndarray | int, horizon: int) -> np.ndarray:
    """Timestamps of the ``horizon`` hours after ``last_timestamp`` (shape (..., horizon))."""
    steps = np.arange(1, horizon + 1, dtype=np.int64) * SECONDS_PER_HOUR
    return np.asarray(last_timestamp, dtype=np.int64)[..., None] + steps


_WEEK_FLOAT32 = _WEEK.astype(np.float32)


def horizon_calendar(last_timestamps: np.ndarray, horizon: int) -> np.ndarray:
    """``calendar_features(horizon_timestamps(last_timestamps, horizon))`` as float32, the
    network's input, in three numpy calls: it runs on every prediction."""
    first_hours = np.asarray(last_timestamps, dtype=np.int64)[..., None] // SECONDS_PER_HOUR
    return _WEEK_FLOAT32[(first_hours + np.arange(1, horizon + 1)) % HOURS_PER_WEEK]
