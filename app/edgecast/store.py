"""The model store on a node: one verified bundle directory per model_id under a root.

The rules (which folders are bundles, their order) are ``edgecast.store_rules``, the file the
node module that writes the store runs too, so the predictor sees the store as it was written.
A store entry that is a symbolic link is refused, wherever it points: the node module never
makes one, and a link would serve a folder from outside the store.
"""

from __future__ import annotations

from pathlib import Path

from edgecast.bundle import BundleError
from edgecast.store_rules import MANIFEST, is_model_id, list_bundles


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, model_id: str) -> Path:
        if not is_model_id(model_id):
            raise BundleError(f"{model_id!r} is not a valid model_id")
        path = self.root / model_id
        try:
            linked = path.is_symlink()
            present = (path / MANIFEST).is_file()
        except OSError as exc:  # a folder the predictor's user may not read, say
            raise BundleError(
                f"model {model_id!r} in the model store {self.root} cannot be read: "
                f"{exc.strerror or exc}"
            ) from None
        if linked:
            raise BundleError(
                f"{model_id!r} in the model store {self.root} is a symbolic link: a store holds "
                "bundle folders, never links to them"
            )
        if not present:
            raise LookupError(f"model {model_id!r} is not in the model store {self.root}")
        return path

    def model_ids(self) -> list[str]:
        """Bundles in the store, oldest first (by the manifest's creation time, then name)."""
        return [name for _, name in list_bundles(str(self.root))]

    def latest(self) -> str:
        ids = self.model_ids()
        if not ids:
            raise LookupError(f"the model store {self.root} holds no bundle; train one first")
        return ids[-1]
