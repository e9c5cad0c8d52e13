"""Turn raw hourly loads into the network's inputs and its outputs back into kWh.

The fitted scaling travels in the bundle, so an edge node never needs the training data.
Everything here is plain numpy and is shared by training, the cloud's reference outputs and the
edge predictor, so both sides compute exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgecast.architecture import SBNConfig
from edgecast.calendar import horizon_calendar


class ScalingError(ValueError):
    """A scaling file that cannot be used."""


@dataclass(frozen=True)
class Scaling:
    load_mean: float
    load_std: float
    temperature_mean: float = 0.0
    temperature_std: float = 1.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int | float) or not np.isfinite(value):
                raise ScalingError(f"scaling {name} must be a finite number, got {value!r}")
        if self.load_std <= 0 or self.temperature_std <= 0:
            raise ScalingError("scaling standard deviations must be positive")

    @classmethod
    def fit(cls, loads: np.ndarray, temperatures: np.ndarray | None = None) -> Scaling:
        temps = {}
        if temperatures is not None:
            temps = {
                "temperature_mean": float(np.nanmean(temperatures)),
                "temperature_std": float(np.nanstd(temperatures)) or 1.0,
            }
        return cls(float(np.nanmean(loads)), float(np.nanstd(loads)) or 1.0, **temps)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Scaling:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ScalingError(f"unknown scaling field(s) {unknown}")
        try:
            return cls(**data)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ScalingError(f"scaling is incomplete: {exc}") from None


# Hours whose mean and spread set a window's frame under "window" normalization: a week, so
# that the frame does not depend on the weekday the window ends on.
FRAME_HOURS = 168
# The smallest spread a frame divides by, as a fraction of the training period's: a flat window
# (a meter stuck on one value) must not blow its inputs up.
MIN_SPREAD = 0.05


def load_frame(
    config: SBNConfig, scaling: Scaling, loads: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The (level, spread) of each window (shape (n, 1) each) that loads are scaled by.

    ``global``: the training period's mean and standard deviation for every window. ``window``:
    the mean and standard deviation of the window's last week, so a building whose level moved
    since training is seen in its own frame.
    """
    n = len(loads)
    if config.normalization == "global":
        return np.full((n, 1), scaling.load_mean), np.full((n, 1), scaling.load_std)
    recent = loads[:, -min(FRAME_HOURS, config.window) :]
    hours = recent.shape[1]
    # numpy's mean and std, step for step (the same reductions, so the same bits), without
    # their Python wrappers, and the mean computed once: this runs on every prediction.
    level = recent.sum(axis=1, keepdims=True) / hours
    deviation = recent - level
    np.multiply(deviation, deviation, out=deviation)
    spread = np.sqrt(deviation.sum(axis=1, keepdims=True) / hours)
    return level, np.maximum(spread, MIN_SPREAD * scaling.load_std)


def model_inputs(
    config: SBNConfig,
    scaling: Scaling,
    loads: np.ndarray,
    last_timestamps: np.ndarray,
    temperatures: np.ndarray | None = None,
    frame: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Inputs for a batch: loads (n, window) in kWh, last_timestamps (n,) epoch seconds;
    ``frame``: the loads' ``load_frame``, when the caller has it already."""
    level, spread = frame if frame is not None else load_frame(config, scaling, loads)
    inputs = {
        "load": ((loads - level) / spread).astype(np.float32),
        "calendar": horizon_calendar(last_timestamps, config.horizon),
    }
    if config.use_temperature:
        if temperatures is None:
            raise ValueError("this model needs temperatures")
        inputs["temperature"] = (
            (temperatures - scaling.temperature_mean) / scaling.temperature_std
        ).astype(np.float32)
    return inputs


def to_kwh(
    config: SBNConfig,
    scaling: Scaling,
    loads: np.ndarray,
    outputs: np.ndarray,
    frame: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The network's outputs for the windows ``loads`` back in kWh (the inverse of the frame);
    ``frame``: the loads' ``load_frame``, when the caller has it already."""
    level, spread = frame if frame is not None else load_frame(config, scaling, loads)
    return outputs.astype(np.float64) * spread + level


def to_frame(
    config: SBNConfig, scaling: Scaling, loads: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Targets in kWh in the frame of their windows: what the network learns to output."""
    level, spread = load_frame(config, scaling, loads)
    return ((targets - level) / spread).astype(np.float32)
