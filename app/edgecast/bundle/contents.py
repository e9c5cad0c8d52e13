"""What a verified bundle holds, parsed: the parts a runtime builds and checks a model from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecast.architecture import SBNConfig
from edgecast.bundle.parity import ParityTolerance
from edgecast.features import Scaling


@dataclass(frozen=True)
class Reference:
    """Inputs the cloud chose and the forecasts (kWh) the cloud's model gave for them."""

    loads: np.ndarray
    last_timestamps: np.ndarray
    outputs: np.ndarray
    temperatures: np.ndarray | None = None


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: dict[str, object]
    config: SBNConfig
    scaling: Scaling
    weights: dict[str, np.ndarray]
    reference: Reference
    tolerance: ParityTolerance
    litert_model: bytes | None

    @property
    def model_id(self) -> str:
        return str(self.manifest["model_id"])

    @property
    def signed(self) -> bool:
        return "signature" in self.manifest

    def summary(self) -> dict[str, object]:
        """The manifest without the per-file digests: what an operator wants to see."""
        return {k: v for k, v in self.manifest.items() if k not in ("files", "signature")} | {
            "signed": self.signed,
            "files": sorted(self.manifest["files"]),  # type: ignore[arg-type]
        }
