"""Model stores of real trained bundles, as the tests share them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


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
