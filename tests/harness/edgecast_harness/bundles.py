"""Model stores of real trained bundles, as the tests share them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .predictor import edgecast


@dataclass
class TrainedStore:
    """A model store holding two bundles of building b13 (different seeds, different weights)."""

    root: Path
    model_ids: list[str]

    def copy_to(self, dest: Path, *model_ids: str) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        for model_id in model_ids or self.model_ids:
            shutil.copytree(self.root / model_id, dest / model_id)
        return dest


def two_bundles(given: list[Path] | None, work: Path) -> list[Path]:
    """The two bundle folders a benchmark alternates: ``given``, or two small b13 bundles
    trained by the real CLI into ``work/b`` (different seeds, different weights)."""
    if given:
        return [bundle.resolve() for bundle in given]
    for seed in ("0", "1"):
        edgecast("train", "--building", "b13", "--out", str(work / "b"), "--seed", seed,
                 "--epochs", "3")  # fmt: skip
    return sorted((work / "b").iterdir())
