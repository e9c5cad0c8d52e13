"""Fault injection for model bundles: copies of a good bundle with exactly one thing wrong.

Every fault works on real bundle files the way a broken copy, a bad disk or an attacker would
change them. Faults that must get past the digest check (so that a later check has to catch
them) rewrite the manifest's size and sha256 for the file they change, exactly as an honest
but wrong cloud build would. Each fault returns the fragments that the refusal message must
contain, so a test can insist on a specific message and not just on a refusal.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
SCALING = "scaling.json"
REFERENCE = "reference.npz"

# A fault changes a bundle directory in place and returns what the refusal must mention.
Inject = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Inject


def read_manifest(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def write_manifest(bundle: Path, manifest: dict) -> None:
    """Writes the manifest in the same layout as ``edgecast.bundle`` does."""
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def refresh_digest(bundle: Path, name: str) -> None:
    """Makes the manifest's size and sha256 for ``name`` match the file as it is now."""
    data = (bundle / name).read_bytes()
    manifest = read_manifest(bundle)
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    write_manifest(bundle, manifest)


def clone_bundle(source: Path, parent: Path, model_id: str) -> Path:
    """Copies ``source`` to ``parent/model_id`` and renames it in the manifest to match.

    The manifest is not among the digested files, so renaming leaves every digest valid; a
    signature would not survive it, so any signature is dropped (re-sign the clone if needed).
    """
    clone = parent / model_id
    parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, clone)
    manifest = read_manifest(clone)
    manifest["model_id"] = model_id
    manifest.pop("signature", None)
    write_manifest(clone, manifest)
    return clone


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


# --- faults in a bundle directory -------------------------------------------------------------


def truncate_weights(bundle: Path) -> list[str]:
    """weights.npz cut in half, as an interrupted copy leaves it."""
    path = bundle / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return [WEIGHTS, f"{len(data) // 2} bytes but the manifest says {len(data)}", "truncated"]


def flip_weights_byte(bundle: Path) -> list[str]:
    """One bit pattern inverted in the middle of weights.npz: same size, other content."""
    path = bundle / WEIGHTS
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return [WEIGHTS, "sha256", "does not match the manifest", "corrupted or modified"]


def delete_scaling(bundle: Path) -> list[str]:
    (bundle / SCALING).unlink()
    return [f"missing file '{SCALING}'"]


def wrong_weight_shape(bundle: Path) -> list[str]:
    """context/kernel one input row short, with the manifest's digests made to match."""
    path = bundle / WEIGHTS
    weights = load_npz(path)
    right = weights["context/kernel"].shape
    weights["context/kernel"] = np.ascontiguousarray(weights["context/kernel"][:-1])
    wrong = weights["context/kernel"].shape
    save_npz(path, weights)
    refresh_digest(bundle, WEIGHTS)
    return [WEIGHTS, "'context/kernel'", f"has shape {wrong}", f"needs {right}"]


def nan_weight(bundle: Path) -> list[str]:
    """Every shape right, one NaN in base/kernel, digests made to match."""
    path = bundle / WEIGHTS
    weights = load_npz(path)
    kernel = weights["base/kernel"].copy()
    kernel.flat[0] = np.nan
    weights["base/kernel"] = kernel
    save_npz(path, weights)
    refresh_digest(bundle, WEIGHTS)
    return [WEIGHTS, "'base/kernel'", "NaN"]


def shift_reference_outputs(bundle: Path, kwh: float = 1.0) -> list[str]:
    """The cloud's reference forecasts all 1 kWh off, digests made to match."""
    path = bundle / REFERENCE
    reference = load_npz(path)
    reference["outputs"] = reference["outputs"] + np.asarray(kwh, dtype=reference["outputs"].dtype)
    save_npz(path, reference)
    refresh_digest(bundle, REFERENCE)
    return ["parity check failed on the keras runtime", "reference outputs"]


def add_unlisted_file(bundle: Path) -> list[str]:
    (bundle / "notes.txt").write_text("not part of the bundle\n")
    return ["unexpected file(s) ['notes.txt'] not listed in the manifest"]


def symlink_weights(bundle: Path) -> list[str]:
    """weights.npz replaced by a symlink to an identical file outside the bundle.

    Followed, the link would give exactly the right bytes, so only the refusal to follow links
    out of a bundle can catch it.
    """
    outside = bundle.parent / f"{bundle.name}-outside-{WEIGHTS}"
    (bundle / WEIGHTS).replace(outside)
    (bundle / WEIGHTS).symlink_to(outside.resolve())
    return [f"'{WEIGHTS}'"]


DIRECTORY_FAULTS = [
    Fault("truncated-weights", truncate_weights),
    Fault("flipped-byte-in-weights", flip_weights_byte),
    Fault("missing-scaling", delete_scaling),
    Fault("wrong-weight-shape", wrong_weight_shape),
    Fault("nan-weight", nan_weight),
    Fault("reference-outputs-off-by-1-kwh", shift_reference_outputs),
    Fault("unlisted-extra-file", add_unlisted_file),
    Fault("symlinked-weights", symlink_weights),
]


# --- faults in signed bundles ---------------------------------------------------------------


def loosen_signed_parity(bundle: Path) -> None:
    """Changes a signed manifest field: a parity tolerance 1000 times looser."""
    manifest = read_manifest(bundle)
    manifest["parity"]["atol"] *= 1000
    write_manifest(bundle, manifest)


# --- faults in tar archives -------------------------------------------------------------------


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def tar_with_traversal(bundle: Path, archive: Path, escape_name: str) -> str:
    """The whole good bundle plus a member that climbs out of the extraction folder."""
    member = f"{bundle.name}/../../{escape_name}"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
        _add_bytes(tar, member, b"written outside the bundle\n")
    return member


def tar_with_symlink(bundle: Path, archive: Path) -> str:
    """The good bundle with weights.npz as a symlink to the real (absolute) weights file."""
    member = f"{bundle.name}/{WEIGHTS}"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name, recursive=False)
        for path in sorted(bundle.iterdir()):
            if path.name != WEIGHTS:
                tar.add(path, arcname=f"{bundle.name}/{path.name}")
        link = tarfile.TarInfo(member)
        link.type = tarfile.SYMTYPE
        link.linkname = str((bundle / WEIGHTS).resolve())
        tar.addfile(link)
    return member


# --- malformed content behind valid digests (an honest but broken build) ---------------------


def weights_not_a_zip_archive(bundle: Path) -> list[str]:
    """weights.npz cut in half before it was hashed: the digests match, the zip is broken."""
    path = bundle / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refresh_digest(bundle, WEIGHTS)
    return [f"{WEIGHTS} is not a readable numpy archive"]


def reference_loads_scalar(bundle: Path) -> list[str]:
    """reference.npz 'loads' a 0-d array instead of (cases, window)."""
    path = bundle / REFERENCE
    reference = load_npz(path)
    reference["loads"] = np.asarray(1.0)
    save_npz(path, reference)
    refresh_digest(bundle, REFERENCE)
    return [REFERENCE, "'loads'"]


def reference_outputs_text(bundle: Path) -> list[str]:
    """reference.npz 'outputs' of the right shape, stored as text."""
    path = bundle / REFERENCE
    reference = load_npz(path)
    reference["outputs"] = reference["outputs"].astype(str)
    save_npz(path, reference)
    refresh_digest(bundle, REFERENCE)
    return [REFERENCE, "'outputs'"]


MALFORMED_FAULTS = [
    Fault("weights-not-a-zip-archive", weights_not_a_zip_archive),
    Fault("reference-loads-0d-array", reference_loads_scalar),
    Fault("reference-outputs-as-text", reference_outputs_text),
]
