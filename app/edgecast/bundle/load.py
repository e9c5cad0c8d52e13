"""Loading a bundle: every check, in an order that reads nothing a cheaper check could refuse.

The folder's manifest and file table first, then the signature and the stated parity tolerance,
then the files themselves (sizes and digests), and only then their contents: the architecture
against the ranges a node builds, the scaling, the parity tolerance against the node's limit,
the weights against the architecture's shapes, the reference cases against the window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgecast.architecture import ArchitectureError, SBNConfig, expected_weight_shapes
from edgecast.bundle.archive import unpacked
from edgecast.bundle.contents import Bundle, Reference
from edgecast.bundle.errors import BundleError
from edgecast.bundle.files import open_folder, read_files
from edgecast.bundle.json_files import finite_number, json_object
from edgecast.bundle.layout import (
    ARCHITECTURE,
    LITERT,
    MAX_REFERENCE_CASES,
    REFERENCE,
    SCALING,
    WEIGHTS,
)
from edgecast.bundle.manifest import check_signature, read_manifest
from edgecast.bundle.npz import npz_arrays, npz_headers, npz_members, open_npz, parsing
from edgecast.bundle.parity import DEFAULT_PARITY_LIMIT, ParityLimit, stated_tolerance
from edgecast.features import Scaling, ScalingError
from edgecast.store_rules import shown


def _load_weights(config: SBNConfig, data: bytes) -> dict[str, np.ndarray]:
    expected = expected_weight_shapes(config)
    with parsing(WEIGHTS), open_npz(WEIGHTS, data) as archive:
        members = npz_members(WEIGHTS, archive)
        missing = sorted(set(expected) - set(members))
        extra = sorted(set(members) - set(expected))
        if missing or extra:
            raise BundleError(
                f"{WEIGHTS}: missing weights {shown(missing)}, unexpected weights {shown(extra)}"
            )
        headers = npz_headers(WEIGHTS, archive, members)
        for key, shape in expected.items():
            header = headers[key]
            if header.shape != shape:
                raise BundleError(
                    f"{WEIGHTS}: '{key}' has shape {shown(header.shape)}, the architecture "
                    f"needs {shape}"
                )
            if header.dtype != np.float32:
                raise BundleError(f"{WEIGHTS}: '{key}' is {header.dtype}, expected float32")
        weights = npz_arrays(WEIGHTS, archive, members, headers)
    for key, array in weights.items():
        if not np.isfinite(array).all():
            raise BundleError(f"{WEIGHTS}: '{key}' contains NaN or infinite values")
    return weights


def _load_reference(config: SBNConfig, data: bytes) -> Reference:
    names = ["loads", "last_timestamps", "outputs"] + (
        ["temperatures"] if config.use_temperature else []
    )
    with parsing(REFERENCE), open_npz(REFERENCE, data) as archive:
        members = npz_members(REFERENCE, archive)
        for key in names:
            if key not in members:
                raise BundleError(f"{REFERENCE}: no '{key}' array")
        extra = sorted(set(members) - set(names))
        if extra:
            raise BundleError(
                f"{REFERENCE}: unexpected array(s) {shown(extra)}; it holds {', '.join(names)}"
            )
        headers = npz_headers(REFERENCE, archive, members)
        loads = headers["loads"].shape
        n = loads[0] if len(loads) == 2 else 0
        if not 1 <= n <= MAX_REFERENCE_CASES or loads[1] != config.window:
            raise BundleError(
                f"{REFERENCE}: 'loads' has shape {shown(loads)}, expected (n, {config.window}) "
                f"with 1 <= n <= {MAX_REFERENCE_CASES}"
            )
        shapes = {
            "loads": (n, config.window),
            "last_timestamps": (n,),
            "outputs": (n, config.horizon),
            "temperatures": (n, config.window),
        }
        for key in names:
            if headers[key].shape != shapes[key]:
                raise BundleError(
                    f"{REFERENCE}: '{key}' has shape {shown(headers[key].shape)}, expected "
                    f"{shapes[key]}"
                )
        if headers["last_timestamps"].dtype.kind not in "iu":
            raise BundleError(
                f"{REFERENCE}: 'last_timestamps' holds {headers['last_timestamps'].dtype} "
                "values, not whole seconds"
            )
        arrays = npz_arrays(REFERENCE, archive, members, headers)
    for key in names:
        if not np.isfinite(arrays[key]).all():
            raise BundleError(f"{REFERENCE}: '{key}' contains NaN or infinite values")
    return Reference(
        loads=arrays["loads"].astype(np.float64),
        last_timestamps=arrays["last_timestamps"].astype(np.int64),
        outputs=arrays["outputs"].astype(np.float64),
        temperatures=arrays["temperatures"].astype(np.float64) if config.use_temperature else None,
    )


def _load_architecture(data: bytes) -> SBNConfig:
    try:
        return SBNConfig.from_dict(json_object(ARCHITECTURE, data))
    except ArchitectureError as exc:
        raise BundleError(f"{ARCHITECTURE}: {exc}") from None


def _load_scaling(data: bytes) -> Scaling:
    values = json_object(SCALING, data)
    known = set(Scaling.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise BundleError(f"{SCALING}: unknown scaling field(s) {shown(unknown)}")
    numbers = {key: finite_number(value) for key, value in values.items()}
    for key, number in numbers.items():
        if number is None:
            raise BundleError(
                f"{SCALING}: {key} is {shown(values[key])}, not a finite number a float holds"
            )
    try:
        return Scaling.from_dict(numbers)  # type: ignore[arg-type]
    except ScalingError as exc:
        raise BundleError(f"{SCALING}: {exc}") from None


def load_bundle_dir(
    directory: Path,
    public_key: Ed25519PublicKey | None = None,
    parity_limit: ParityLimit = DEFAULT_PARITY_LIMIT,
) -> Bundle:
    """Loads and verifies a bundle folder: digests, signature, layout, and the node's limits."""
    directory = Path(directory)
    with open_folder(directory) as folder:
        manifest, table = read_manifest(folder, directory)
        if directory.name != manifest["model_id"]:
            raise BundleError(
                f"folder {directory.name!r} holds model_id {manifest['model_id']!r}: a bundle's "
                "folder must be named by its model_id"
            )
        check_signature(manifest, public_key)
        tolerance = stated_tolerance(manifest)
        contents = read_files(folder, table)
    config = _load_architecture(contents[ARCHITECTURE])
    scaling = _load_scaling(contents[SCALING])
    parity_limit.check(tolerance, scaling.load_std)
    return Bundle(
        path=directory,
        manifest=manifest,
        config=config,
        scaling=scaling,
        weights=_load_weights(config, contents[WEIGHTS]),
        reference=_load_reference(config, contents[REFERENCE]),
        tolerance=tolerance,
        litert_model=contents.get(LITERT),
    )


def load_bundle(
    path: Path,
    public_key: Ed25519PublicKey | None = None,
    parity_limit: ParityLimit = DEFAULT_PARITY_LIMIT,
) -> Bundle:
    """Loads and verifies a bundle directory or tar archive (digests, signature, layout)."""
    with unpacked(path) as directory:
        return load_bundle_dir(directory, public_key, parity_limit)
