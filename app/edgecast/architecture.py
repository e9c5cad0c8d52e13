"""The SBN-style network's hyper-parameters and weight layout, without any ML framework.

Stacked boosters: a linear base learner forecasts each horizon hour from the same hour on
previous days (the series seen as cascading univariate series, one per hour of the horizon),
then each booster adds a correction to the previous stage's forecast. Every stage applies the
same weights at every horizon step (parameter sharing, equivariance over time steps); only a
small context layer sees the whole input window, and every step also sees the most recent
hours (the current level of the series).

How the loads are scaled into the network is a hyper-parameter too (``normalization``):
``global`` subtracts the training period's mean and divides by its standard deviation, which no
longer fits a building whose level moves; ``window`` scales each input window by its own recent
level and spread and maps the forecast back with the same two numbers (reversible instance
normalisation), so the network forecasts shapes and the level comes from the request itself.

The layout lives here, apart from Keras, so an edge node can check a bundle's weights before
it loads any framework, and so a bundle stays readable by any framework version. A bundle's
hyper-parameters are checked against the ranges below before anything is computed from them: a
bundle must not make a node build a network it has no memory or time for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from edgecast.calendar import CALENDAR_FEATURES
from edgecast.store_rules import shown

ARCHITECTURE_NAME = "sbn"
# Version 2 added ``normalization``; a version 1 architecture is a version 2 one with "global".
ARCHITECTURE_VERSION = 2
READABLE_VERSIONS = (1, 2)
NORMALIZATIONS = ("global", "window")
# The hyper-parameters an edge node builds: wide enough for any hourly model worth serving,
# narrow enough that the largest network's weights fit edgecast.bundle's size caps.
HYPER_PARAMETER_RANGES = {
    "window": (1, 8760),  # a year of hours
    "horizon": (1, 168),  # a week
    "lag_days": (1, 365),
    "recent_hours": (0, 168),
    "context_units": (1, 256),
    "booster_units": (1, 256),
    "boosters": (0, 16),
}


class ArchitectureError(ValueError):
    """Hyper-parameters that do not describe a buildable network."""


@dataclass(frozen=True)
class SBNConfig:
    window: int = 600
    horizon: int = 24
    lag_days: int = 14
    recent_hours: int = 24
    context_units: int = 32
    booster_units: int = 32
    boosters: int = 3
    use_temperature: bool = False
    normalization: str = "window"

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name == "normalization":
                if value not in NORMALIZATIONS:
                    raise ArchitectureError(
                        f"normalization {shown(value)} is not one of {', '.join(NORMALIZATIONS)}"
                    )
                continue
            if field.type == "bool":
                if not isinstance(value, bool):
                    raise ArchitectureError(
                        f"{field.name} must be true or false, not {shown(value)}"
                    )
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise ArchitectureError(f"{field.name} must be an integer, not {shown(value)}")
            low, high = HYPER_PARAMETER_RANGES[field.name]
            if not low <= value <= high:
                raise ArchitectureError(
                    f"{field.name} {shown(value)} is outside the range {low} to {high} that "
                    "an edge node builds"
                )
        needed = self.min_window()
        if self.window < needed:
            raise ArchitectureError(
                f"window {self.window} is too short for horizon {self.horizon} and "
                f"lag_days {self.lag_days}: it must be at least {needed} hours"
            )

    def min_window(self) -> int:
        """Shortest window that holds every lag of every horizon step."""
        return max(
            self.recent_hours,
            *(
                24 * (math.ceil((step + 1) / 24) + self.lag_days - 1) - step
                for step in range(self.horizon)
            ),
        )

    @property
    def calendar_width(self) -> int:
        return len(CALENDAR_FEATURES)

    def to_dict(self) -> dict[str, object]:
        return {"name": ARCHITECTURE_NAME, "version": ARCHITECTURE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SBNConfig:
        version = data.get("version")
        if (
            data.get("name") != ARCHITECTURE_NAME
            or isinstance(version, bool)
            or version not in READABLE_VERSIONS
        ):
            raise ArchitectureError(
                f"unsupported architecture {shown(data.get('name'))} version "
                f"{shown(version)} (this edgecast reads {ARCHITECTURE_NAME!r} "
                f"versions {', '.join(map(str, READABLE_VERSIONS))})"
            )
        names = {f.name for f in fields(cls)}
        implied: dict[str, object] = {}
        if version == 1:
            names.discard("normalization")
            implied["normalization"] = "global"
        unknown = sorted(set(data) - names - {"name", "version"})
        if unknown:
            raise ArchitectureError(f"unknown hyper-parameter(s) {shown(unknown)}")
        return cls(**implied, **{k: v for k, v in data.items() if k in names})  # type: ignore[arg-type]


def step_indices(config: SBNConfig) -> np.ndarray:
    """Window positions each horizon step reads: same hour on previous days, then recent hours.

    Row h (target hour last+h+1) lists the ``lag_days`` most recent observed hours at the same
    time of day, newest first, then the last ``recent_hours`` of the window, oldest first.
    """
    recent = list(range(config.window - config.recent_hours, config.window))
    rows = []
    for step in range(config.horizon):
        first_day = math.ceil((step + 1) / 24)
        same_hour = [config.window + step - 24 * (first_day + k) for k in range(config.lag_days)]
        rows.append(same_hour + recent)
    indices = np.asarray(rows, dtype=np.int32)
    if indices.min() < 0:  # guarded by SBNConfig.__post_init__
        raise ArchitectureError("lag indices fall before the start of the window")
    return indices


def expected_weight_shapes(config: SBNConfig) -> dict[str, tuple[int, ...]]:
    """Name and shape of every weight, in the order the network creates them."""
    context_in = config.window * (2 if config.use_temperature else 1)
    step_features = config.lag_days + config.recent_hours + config.calendar_width
    shapes: dict[str, tuple[int, ...]] = {
        "context/kernel": (context_in, config.context_units),
        "context/bias": (config.context_units,),
        "base/kernel": (step_features, 1),
        "base/bias": (1,),
    }
    booster_in = 1 + step_features + config.context_units
    for i in range(config.boosters):
        shapes[f"booster_{i}_hidden/kernel"] = (booster_in, config.booster_units)
        shapes[f"booster_{i}_hidden/bias"] = (config.booster_units,)
        shapes[f"booster_{i}_out/kernel"] = (config.booster_units, 1)
        shapes[f"booster_{i}_out/bias"] = (1,)
    return shapes
