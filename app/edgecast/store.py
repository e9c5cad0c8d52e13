"""The model store on a node: one verified bundle directory per model_id under a root."""

from __future__ import annotations

import json
from pathlib import Path

from edgecast.bundle import MANIFEST, MODEL_ID_PATTERN, BundleError


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, model_id: str) -> Path:
        if not isinstance(model_id, str) or not MODEL_ID_PATTERN.match(model_id):
            raise BundleError(f"{model_id!r} is not a valid model_id")
        path = self.root / model_id
        if not (path / MANIFEST).is_file():
            raise LookupError(f"model {model_id!r} is not in the model store {self.root}")
        return path

    def model_ids(self) -> list[str]:
        """Bundles in the store, oldest first (by the manifest's creation time, then name)."""
        found = []
        if not self.root.is_dir():
            return []
        for path in self.root.iterdir():
            if not MODEL_ID_PATTERN.match(path.name) or not (path / MANIFEST).is_file():
                continue
            try:
                created = str(json.loads((path / MANIFEST).read_bytes()).get("created", ""))
            except (ValueError, OSError, AttributeError):
                created = ""
            found.append((created, path.name))
        return [name for _, name in sorted(found)]

    def latest(self) -> str:
        ids = self.model_ids()
        if not ids:
            raise LookupError(f"the model store {self.root} holds no bundle; train one first")
        return ids[-1]
