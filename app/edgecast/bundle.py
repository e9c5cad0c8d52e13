"""The model bundle: the unit that travels from the cloud to the edge, and its verification.

A bundle is a directory named by its model_id (or a tar of it) holding ``manifest.json`` and
the files it lists with their size and sha256. Nothing in a bundle is used before every digest
matches and, where a public key is configured, the signature verifies. Files are read once into
memory, hashed, and parsed from those same bytes, so nothing can change between check and use.
Verification here needs no ML framework; the runtimes add the parity check on top.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgecast.architecture import ArchitectureError, SBNConfig, expected_weight_shapes
from edgecast.features import Scaling, ScalingError
from edgecast.signing import SigningError, sign_manifest, verify_manifest
from edgecast.store_rules import MANIFEST, is_model_id

FORMAT_VERSION = 1
ARCHITECTURE = "architecture.json"
WEIGHTS = "weights.npz"
SCALING = "scaling.json"
REFERENCE = "reference.npz"
LITERT = "model.tflite"
REQUIRED_FILES = (ARCHITECTURE, WEIGHTS, SCALING, REFERENCE)


class BundleError(ValueError):
    """A bundle that must not be used; the message says exactly what is wrong."""


@dataclass(frozen=True)
class Reference:
    """Inputs the cloud chose and the forecasts (kWh) the cloud's model gave for them."""

    loads: np.ndarray
    last_timestamps: np.ndarray
    outputs: np.ndarray
    temperatures: np.ndarray | None = None


@dataclass(frozen=True)
class ParityTolerance:
    """An edge forecast matches when |edge - cloud| <= atol + rtol * |cloud| (kWh)."""

    atol: float
    rtol: float


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


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
        ARCHITECTURE: _json_bytes(config.to_dict()),
        WEIGHTS: _npz_bytes({k: v.astype(np.float32) for k, v in weights.items()}),
        SCALING: _json_bytes(scaling.to_dict()),
        REFERENCE: _npz_bytes(ref),
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
            name: {"sha256": _sha256(data), "size": len(data)} for name, data in contents.items()
        },
    }
    if signing_key is not None:
        manifest["signature"] = sign_manifest(manifest, signing_key)
    (directory / MANIFEST).write_bytes(_json_bytes(manifest))
    return directory


def _read_manifest(directory: Path) -> dict[str, object]:
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(f"{directory}: no {MANIFEST} (not a bundle, or an incomplete copy)")
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{MANIFEST} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{MANIFEST} must hold a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format_version {manifest.get('format_version')!r} is not supported "
            f"(this edgecast reads version {FORMAT_VERSION})"
        )
    model_id = manifest.get("model_id")
    if not is_model_id(model_id):
        raise BundleError(f"manifest model_id {model_id!r} is missing or not a safe name")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, dict) for v in files.values()):
        raise BundleError(f"{MANIFEST} has no 'files' table of sizes and digests")
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise BundleError(f"manifest does not list required file(s) {missing}")
    return manifest


def _check_signature(manifest: dict[str, object], public_key: Ed25519PublicKey | None) -> None:
    signature = manifest.get("signature")
    if public_key is None:
        if signature is not None:
            key = signature.get("key_id") if isinstance(signature, dict) else None
            raise BundleError(
                f"bundle is signed (key id {key}) but no public key is configured to verify it; "
                "configure the signer's public key"
            )
        return
    if signature is None:
        raise BundleError("bundle is unsigned but a public key is configured: signature required")
    try:
        verify_manifest(manifest, public_key)
    except SigningError as exc:
        raise BundleError(f"bad signature: {exc}") from None


def _read_files(directory: Path, manifest: dict[str, object]) -> dict[str, bytes]:
    files: dict[str, dict[str, object]] = manifest["files"]  # type: ignore[assignment]
    present = {p.name for p in directory.iterdir()} - {MANIFEST}
    unexpected = sorted(present - set(files))
    if unexpected:
        raise BundleError(f"unexpected file(s) {unexpected} not listed in the manifest")
    contents = {}
    for name, entry in sorted(files.items()):
        if "/" in name or name in ("", ".", ".."):
            raise BundleError(f"manifest lists an unsafe file name {name!r}")
        path = directory / name
        if path.is_symlink():
            raise BundleError(f"{name!r} is a symbolic link: bundle files must be regular files")
        if not path.exists():
            raise BundleError(f"missing file {name!r} listed in the manifest")
        if not path.is_file():
            raise BundleError(f"{name!r} is not a regular file")
        data = path.read_bytes()
        if len(data) != entry.get("size"):
            raise BundleError(
                f"{name}: {len(data)} bytes but the manifest says {entry.get('size')} "
                "(truncated or replaced file)"
            )
        if _sha256(data) != entry.get("sha256"):
            raise BundleError(
                f"{name}: sha256 {_sha256(data)} does not match the manifest's "
                f"{entry.get('sha256')} (corrupted or modified file)"
            )
        contents[name] = data
    return contents


def _load_npz(name: str, data: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive of named arrays")
            arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # any parse failure of untrusted bytes is a refusal
        raise BundleError(f"{name} is not a readable numpy archive: {exc}") from None
    for key, array in arrays.items():
        if array.dtype.kind not in "fiu":
            raise BundleError(f"{name}: '{key}' holds {array.dtype} values, not numbers")
    return arrays


def _load_json(name: str, data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BundleError(f"{name} must hold a JSON object")
    return value


def _check_weights(config: SBNConfig, weights: dict[str, np.ndarray]) -> None:
    expected = expected_weight_shapes(config)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing or extra:
        raise BundleError(f"{WEIGHTS}: missing weights {missing}, unexpected weights {extra}")
    for name, shape in expected.items():
        array = weights[name]
        if array.shape != shape:
            raise BundleError(
                f"{WEIGHTS}: '{name}' has shape {array.shape}, the architecture needs {shape}"
            )
        if array.dtype != np.float32:
            raise BundleError(f"{WEIGHTS}: '{name}' is {array.dtype}, expected float32")
        if not np.isfinite(array).all():
            raise BundleError(f"{WEIGHTS}: '{name}' contains NaN or infinite values")


def _check_reference(config: SBNConfig, arrays: dict[str, np.ndarray]) -> Reference:
    for key in ("loads", "last_timestamps", "outputs"):
        if key not in arrays:
            raise BundleError(f"{REFERENCE}: no '{key}' array")
    n = len(arrays["loads"]) if arrays["loads"].ndim else 0
    shapes = {
        "loads": (n, config.window),
        "last_timestamps": (n,),
        "outputs": (n, config.horizon),
    }
    if config.use_temperature:
        shapes["temperatures"] = (n, config.window)
    for key, shape in shapes.items():
        if key not in arrays or arrays[key].shape != shape or n == 0:
            got = arrays[key].shape if key in arrays else None
            raise BundleError(f"{REFERENCE}: '{key}' has shape {got}, expected {shape} with n > 0")
        if not np.isfinite(arrays[key]).all():
            raise BundleError(f"{REFERENCE}: '{key}' contains NaN or infinite values")
    return Reference(
        loads=arrays["loads"].astype(np.float64),
        last_timestamps=arrays["last_timestamps"].astype(np.int64),
        outputs=arrays["outputs"].astype(np.float64),
        temperatures=arrays["temperatures"].astype(np.float64) if config.use_temperature else None,
    )


def _tolerance(manifest: dict[str, object]) -> ParityTolerance:
    parity = manifest.get("parity")
    try:
        tolerance = ParityTolerance(float(parity["atol"]), float(parity["rtol"]))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        raise BundleError("manifest has no valid 'parity' tolerance {atol, rtol}") from None
    if not (0 <= tolerance.atol < np.inf and 0 <= tolerance.rtol < np.inf):
        raise BundleError(f"parity tolerance {tolerance} must be finite and non-negative")
    return tolerance


def load_bundle_dir(directory: Path, public_key: Ed25519PublicKey | None = None) -> Bundle:
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: no such bundle directory")
    manifest = _read_manifest(directory)
    if directory.name != manifest["model_id"]:
        raise BundleError(
            f"folder {directory.name!r} holds model_id {manifest['model_id']!r}: a bundle's folder "
            "must be named by its model_id"
        )
    _check_signature(manifest, public_key)
    contents = _read_files(directory, manifest)
    try:
        config = SBNConfig.from_dict(_load_json(ARCHITECTURE, contents[ARCHITECTURE]))
    except (ArchitectureError, TypeError) as exc:
        raise BundleError(f"{ARCHITECTURE}: {exc}") from None
    try:
        scaling = Scaling.from_dict(_load_json(SCALING, contents[SCALING]))
    except ScalingError as exc:
        raise BundleError(f"{SCALING}: {exc}") from None
    weights = _load_npz(WEIGHTS, contents[WEIGHTS])
    _check_weights(config, weights)
    reference = _check_reference(config, _load_npz(REFERENCE, contents[REFERENCE]))
    return Bundle(
        path=directory,
        manifest=manifest,
        config=config,
        scaling=scaling,
        weights=weights,
        reference=reference,
        tolerance=_tolerance(manifest),
        litert_model=contents.get(LITERT),
    )


@contextmanager
def unpacked(path: Path) -> Iterator[Path]:
    """Yields the bundle folder of ``path``: the directory itself or a tar's single top folder."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file() or not tarfile.is_tarfile(path):
        raise BundleError(f"{path}: neither a bundle directory nor a tar archive")
    scratch = Path(tempfile.mkdtemp(prefix="edgecast-bundle-"))
    try:
        with tarfile.open(path) as archive:
            for member in archive.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise BundleError(f"{path}: member {member.name!r} is not a file or folder")
            archive.extractall(scratch, filter="data")
        tops = list(scratch.iterdir())
        if len(tops) != 1 or not tops[0].is_dir():
            raise BundleError(f"{path}: the archive must hold exactly one bundle folder")
        yield tops[0]
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"{path}: cannot unpack: {exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_bundle(path: Path, public_key: Ed25519PublicKey | None = None) -> Bundle:
    """Loads and verifies a bundle directory or tar archive (digests, signature, layout)."""
    with unpacked(path) as directory:
        return load_bundle_dir(directory, public_key)


def sign_bundle(directory: Path, signing_key: Ed25519PrivateKey) -> str:
    """Signs an existing bundle after checking every digest; returns the key id used."""
    directory = Path(directory)
    manifest = _read_manifest(directory)
    _read_files(directory, manifest)
    manifest["signature"] = sign_manifest(manifest, signing_key)
    staged = directory / f".{MANIFEST}.tmp"
    staged.write_bytes(_json_bytes(manifest))
    staged.replace(directory / MANIFEST)
    return str(manifest["signature"]["key_id"])  # type: ignore[index]


def pack_bundle(directory: Path, archive: Path) -> Path:
    """Writes ``directory`` as a gzip tar holding one folder named by the model_id."""
    manifest = _read_manifest(Path(directory))
    _read_files(Path(directory), manifest)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=str(manifest["model_id"]))
    return Path(archive)
