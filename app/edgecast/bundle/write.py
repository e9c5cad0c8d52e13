"""Making a bundle: writing its files and manifest, and signing one that exists."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgecast.architecture import SBNConfig
from edgecast.bundle.contents import Reference
from edgecast.bundle.errors import BundleError
from edgecast.bundle.files import sha256
from edgecast.bundle.json_files import json_bytes
from edgecast.bundle.layout import ARCHITECTURE, FORMAT_VERSION, LITERT, REFERENCE, SCALING, WEIGHTS
from edgecast.bundle.manifest import checked_manifest
from edgecast.bundle.parity import ParityTolerance
from edgecast.features import Scaling
from edgecast.signing import sign_manifest
from edgecast.store_rules import MANIFEST, is_model_id


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def write_bundle(
    parent: Path,
    *,
    model_id: str,
    config: SBNConfig,
    scaling: Scaling,
    weights: dict[str, np.ndarray],
    reference: Reference,
    tolerance: ParityTolerance,
    metadata: dict[str, object],
    litert_model: bytes | None = None,
    signing_key: Ed25519PrivateKey | None = None,
) -> Path:
    """Writes ``parent/model_id/`` and returns it; the manifest is written last."""
    if not is_model_id(model_id):
        raise BundleError(f"model_id {model_id!r} is not a safe directory name")
    ref = {
        "loads": reference.loads,
        "last_timestamps": reference.last_timestamps,
        "outputs": reference.outputs,
    }
    if reference.temperatures is not None:
        ref["temperatures"] = reference.temperatures
    contents = {
        ARCHITECTURE: json_bytes(config.to_dict()),
        WEIGHTS: npz_bytes({k: v.astype(np.float32) for k, v in weights.items()}),
        SCALING: json_bytes(scaling.to_dict()),
        REFERENCE: npz_bytes(ref),
    }
    if litert_model is not None:
        contents[LITERT] = litert_model
    directory = Path(parent) / model_id
    directory.mkdir(parents=True, exist_ok=False)
    for name, data in contents.items():
        (directory / name).write_bytes(data)
    manifest: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **metadata,
        "parity": {"atol": tolerance.atol, "rtol": tolerance.rtol},
        "files": {
            name: {"sha256": sha256(data), "size": len(data)} for name, data in contents.items()
        },
    }
    if signing_key is not None:
        manifest["signature"] = sign_manifest(manifest, signing_key)
    (directory / MANIFEST).write_bytes(json_bytes(manifest))
    return directory


def sign_bundle(directory: Path, signing_key: Ed25519PrivateKey) -> str:
    """Signs an existing bundle after checking every digest; returns the key id used."""
    directory = Path(directory)
    manifest = checked_manifest(directory)
    manifest["signature"] = sign_manifest(manifest, signing_key)
    staged = directory / f".{MANIFEST}.tmp"
    staged.write_bytes(json_bytes(manifest))
    staged.replace(directory / MANIFEST)
    return str(manifest["signature"]["key_id"])  # type: ignore[index]
