"""Turn raw hourly loads into the network's inputs and its outputs back into kWh.

The fitted scaling travels in the bundle, so an edge node never needs the training data.
Everything here is plain numpy and is shared by training, the cloud's reference outputs and the
edge predictor, so both sides compute exactly the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgecast.architecture import SBNConfig
from edgecast.calendar import calendar_features, horizon_timestamps


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


def model_inputs(
    config: SBNConfig,
    scaling: Scaling,
    loads: np.ndarray,
    last_timestamps: np.ndarray,
    temperatures: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Inputs for a batch: loads (n, window) in kWh, last_timestamps (n,) epoch seconds."""
    inputs = {
        "load": ((loads - scaling.load_mean) / scaling.load_std).astype(np.float32),
        "calendar": calendar_features(horizon_timestamps(last_timestamps, config.horizon)).astype(
            np.float32
        ),
    }
    if config.use_temperature:
        if temperatures is None:
            raise ValueError("this model needs temperatures")
        inputs["temperature"] = (
            (temperatures - scaling.temperature_mean) / scaling.temperature_std
        ).astype(np.float32)
    return inputs


def to_kwh(scaling: Scaling, outputs: np.ndarray) -> np.ndarray:
    return outputs.astype(np.float64) * scaling.load_std + scaling.load_mean
