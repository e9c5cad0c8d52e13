"""The model bundle: the unit that travels from the cloud to the edge, and its verification.

A bundle is a directory named by its model_id (or a tar of it) holding ``manifest.json`` and
the files it lists with their size and sha256. Nothing in a bundle is used before every digest
matches and, where a public key is configured, the signature verifies. Files are read once into
memory, hashed, and parsed from those same bytes, so nothing can change between check and use.
Verification here needs no ML framework; the runtimes add the parity check on top.

A bundle speaks for its content, never for the node's limits. What it may weigh (here and in
``edgecast.store_rules``), which networks a node builds (``edgecast.architecture``) and how
loose a parity tolerance it may ask for (:class:`ParityLimit`) are the node's, and each is
checked before the bytes it bounds are read: the manifest's sizes before any file is opened, a
file's size on disk before it is read, an array's shape in an ``.npz`` before its data is
decompressed, an archive member's size before it is extracted. Files are opened without
following links, and every refusal is a :class:`BundleError` whose message says what is wrong.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgecast.architecture import ArchitectureError, SBNConfig, expected_weight_shapes
from edgecast.features import Scaling, ScalingError
from edgecast.signing import SigningError, sign_manifest, verify_manifest
from edgecast.store_rules import (
    MANIFEST,
    MAX_ARCHIVE_MEMBERS,
    MAX_BUNDLE_BYTES,
    MAX_MANIFEST_BYTES,
    is_model_id,
    shown,
)

FORMAT_VERSION = 1
ARCHITECTURE = "architecture.json"
WEIGHTS = "weights.npz"
SCALING = "scaling.json"
REFERENCE = "reference.npz"
LITERT = "model.tflite"
REQUIRED_FILES = (ARCHITECTURE, WEIGHTS, SCALING, REFERENCE)
BUNDLE_FILES = (*REQUIRED_FILES, LITERT)
# The most each file may hold. The largest network that edgecast.architecture's ranges allow
# has 31 MB of float32 weights (its LiteRT export as much again); 64 reference cases of a
# year-long window with temperatures take 9 MB. MAX_BUNDLE_BYTES bounds them all together.
MAX_FILE_BYTES = {
    MANIFEST: MAX_MANIFEST_BYTES,
    ARCHITECTURE: 64 << 10,
    SCALING: 64 << 10,
    WEIGHTS: 40 << 20,
    REFERENCE: 12 << 20,
    LITERT: 40 << 20,
}
MAX_REFERENCE_CASES = 64
# zipfile reads an archive's whole central directory (a few dozen bytes per array) before
# anything else; this keeps a crafted .npz from listing millions of members.
MAX_NPZ_DIRECTORY_BYTES = 64 << 10
# What a bundle archive may hold besides its files: a header or two per member, and its end.
ARCHIVE_HEADER_BYTES = MAX_ARCHIVE_MEMBERS * 4096 + 20480
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
MAX_REASON_CHARS = 200
_COMPRESSED_TARS: tuple[tuple[bytes, Callable[[BinaryIO], BinaryIO]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
)


class BundleError(ValueError):
    """A bundle that must not be used; the message says exactly what is wrong."""


def _reason(exc: BaseException) -> str:
    """A library's error message, cut short: the message of a refusal stays readable."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else f"{text[: MAX_REASON_CHARS - 3]}..."


def _number(value: object) -> float | None:
    """``value`` as a finite float when it is a JSON number that a float holds; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


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
class ParityLimit:
    """The loosest parity tolerance a node accepts, from its own configuration.

    A bundle states the tolerance its cloud build met. Were that the bar, a bundle could switch
    its own gate off (atol 1e300); a node refuses one that asks for more than this: ``rtol``, and
    atol as the fraction ``atol_std`` of the load's standard deviation (the cloud computes its
    atol with the same product, so a bundle of the default training is exactly at the limit).
    """

    rtol: float = 1e-4
    atol_std: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("rtol", "atol_std"):
            value = getattr(self, name)
            if _number(value) is None or value < 0:
                raise ValueError(f"the parity limit's {name} must be a finite number >= 0")

    def check(self, tolerance: ParityTolerance, load_std: float) -> None:
        atol = self.atol_std * load_std
        if tolerance.atol > atol or tolerance.rtol > self.rtol:
            raise BundleError(
                f"the bundle asks for a parity tolerance of atol {tolerance.atol:.3g} kWh and "
                f"rtol {tolerance.rtol:.3g}; this node allows at most atol {atol:.3g} kWh "
                f"({self.atol_std:g} of the load's standard deviation, {load_std:.4g} kWh) and "
                f"rtol {self.rtol:g}"
            )


DEFAULT_PARITY_LIMIT = ParityLimit()


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


def _json(name: str, data: bytes) -> object:
    try:
        return json.loads(data)
    except RecursionError:
        raise BundleError(f"{name} nests arrays or objects too deeply to be read") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{name} is not valid JSON: {_reason(exc)}") from None


def _json_object(name: str, data: bytes) -> dict[str, object]:
    value = _json(name, data)
    if not isinstance(value, dict):
        raise BundleError(f"{name} must hold a JSON object")
    return value


@contextmanager
def _folder(directory: Path) -> Iterator[int]:
    """A descriptor of the bundle folder itself, never through a symbolic link."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        if os.path.islink(directory):
            raise BundleError(
                f"{directory} is a symbolic link: a bundle is a folder, never a link to one"
            ) from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise BundleError(f"{directory}: no such bundle directory") from None
        raise BundleError(f"{directory}: cannot open the bundle folder: {exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _open_file(folder: int, name: str, missing: str) -> BinaryIO:
    """The regular file ``name`` of the bundle folder, opened without following a link (and
    without waiting on a named pipe)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except FileNotFoundError:
        raise BundleError(missing) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError(
                f"{name!r} is a symbolic link: bundle files must be regular files, never links"
            ) from None
        raise BundleError(f"{name!r} cannot be opened: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BundleError(f"{name!r} is not a regular file")
    return os.fdopen(fd, "rb")


def _read_bounded(handle: BinaryIO, name: str, size: int) -> bytes:
    """The ``size`` bytes of an open file, refused unread when the file holds another number."""
    found = os.fstat(handle.fileno()).st_size
    if found != size:
        raise BundleError(
            f"{name}: {found} bytes but the manifest says {size} (truncated or replaced file)"
        )
    try:
        data = handle.read(size + 1)
    except OSError as exc:
        raise BundleError(f"{name} cannot be read: {exc.strerror}") from None
    if len(data) != size:
        raise BundleError(f"{name} changed while it was read: {len(data)} bytes, not {size}")
    return data


def _file_table(manifest: dict[str, object], manifest_size: int) -> dict[str, tuple[int, str]]:
    """(size, sha256) of each file the manifest lists, after checking them against the caps."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{MANIFEST} has no 'files' table of sizes and digests")
    unknown = sorted(set(files) - set(BUNDLE_FILES))
    if unknown:
        raise BundleError(
            f"{MANIFEST} lists {shown(unknown)}, not bundle files (a bundle holds "
            f"{', '.join(BUNDLE_FILES)} and its manifest)"
        )
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise BundleError(f"manifest does not list required file(s) {missing}")
    table = {}
    for name, entry in sorted(files.items()):
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BundleError(
                f"{MANIFEST}: the size of {name} is {shown(size)}, not a whole number of bytes"
            )
        if size > MAX_FILE_BYTES[name]:
            raise BundleError(
                f"{MANIFEST}: {name} of {size} bytes is larger than the {MAX_FILE_BYTES[name]} "
                f"bytes a bundle's {name} may hold"
            )
        if not isinstance(digest, str) or SHA256_PATTERN.fullmatch(digest) is None:
            raise BundleError(
                f"{MANIFEST}: the sha256 of {name} is {shown(digest)}, not 64 hexadecimal digits"
            )
        table[name] = (size, digest)
    total = manifest_size + sum(size for size, _ in table.values())
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"{MANIFEST}: the bundle's files hold {total} bytes, more than the {MAX_BUNDLE_BYTES} "
            "bytes a bundle may hold"
        )
    return table


def _read_manifest(
    folder: int, directory: Path
) -> tuple[dict[str, object], dict[str, tuple[int, str]]]:
    """The manifest, and the (size, sha256) of each file it lists."""
    missing = f"{directory}: no {MANIFEST} (not a bundle, or an incomplete copy)"
    with _open_file(folder, MANIFEST, missing) as handle:
        if os.fstat(handle.fileno()).st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes")
    manifest = _json_object(MANIFEST, data)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle format_version {shown(manifest.get('format_version'))} is not supported "
            f"(this edgecast reads version {FORMAT_VERSION})"
        )
    model_id = manifest.get("model_id")
    if not is_model_id(model_id):
        raise BundleError(f"manifest model_id {shown(model_id)} is missing or not a safe name")
    return manifest, _file_table(manifest, len(data))


def _check_signature(manifest: dict[str, object], public_key: Ed25519PublicKey | None) -> None:
    signature = manifest.get("signature")
    if public_key is None:
        if signature is not None:
            key = str(signature.get("key_id"))[:64] if isinstance(signature, dict) else None
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


def _read_files(folder: int, table: dict[str, tuple[int, str]]) -> dict[str, bytes]:
    try:
        present = set(os.listdir(folder)) - {MANIFEST}
    except OSError as exc:
        raise BundleError(f"the bundle folder cannot be listed: {exc.strerror}") from None
    unexpected = sorted(present - set(table))
    if unexpected:
        raise BundleError(f"unexpected file(s) {shown(unexpected)} not listed in the manifest")
    contents = {}
    for name, (size, digest) in sorted(table.items()):
        with _open_file(folder, name, f"missing file {name!r} listed in the manifest") as handle:
            data = _read_bounded(handle, name, size)
        found = _sha256(data)
        if found != digest:
            raise BundleError(
                f"{name}: sha256 {found} does not match the manifest's {digest} "
                "(corrupted or modified file)"
            )
        contents[name] = data
    return contents


@dataclass(frozen=True)
class _ArrayHeader:
    """What an .npy header says of its array; ``offset`` is where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int


@contextmanager
def _parsing(name: str) -> Iterator[None]:
    """Any failure of zipfile or numpy's reader on a file's untrusted bytes is a refusal."""
    try:
        yield
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"{name} is not a readable numpy archive: {_reason(exc)}") from None


def _zip_directory_bytes(data: bytes) -> int:
    """How much central directory zipfile would read: the size the end record states (found
    where zipfile finds it), at most the whole file; 0 without an end record."""
    end = len(data) - 22
    if end < 0 or data[end : end + 4] != b"PK\x05\x06" or data[-2:] != b"\0\0":
        end = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 0xFFFF))
        if end < 0 or end + 22 > len(data):
            return 0
    if end >= 20 and data[end - 20 : end - 16] == b"PK\x06\x07":
        return len(data)  # a zip64 end record states the size; the file bounds it
    return min(int.from_bytes(data[end + 12 : end + 16], "little"), len(data))


def _npz_members(name: str, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key == info.filename or key in members:
            raise BundleError(
                f"{name}: member {shown(info.filename)} is not a uniquely named .npy array"
            )
        members[key] = info
    return members


def _npz_headers(
    name: str, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
) -> dict[str, _ArrayHeader]:
    """Each array's header, read before any of its data is decompressed."""
    headers = {}
    for key, info in members.items():
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise BundleError(f"{name}: '{key}' is in .npy format {version}, not 1.0 or 2.0")
            offset = member.tell()
        if dtype.hasobject or dtype.kind not in "fiu":
            raise BundleError(f"{name}: '{key}' holds {dtype} values, not numbers")
        if any(size < 0 for size in shape):
            raise BundleError(f"{name}: '{key}' has the impossible shape {shown(shape)}")
        headers[key] = _ArrayHeader(shape, dtype, fortran, offset)
    return headers


def _npz_arrays(
    name: str,
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    headers: dict[str, _ArrayHeader],
) -> dict[str, np.ndarray]:
    """The arrays, each read to exactly the size its (checked) header gives."""
    arrays = {}
    for key, info in members.items():
        header = headers[key]
        size = math.prod(header.shape) * header.dtype.itemsize
        with archive.open(info) as member:
            member.seek(header.offset)
            data = member.read(size)
            trailing = member.read(1)
        if len(data) != size or trailing:
            raise BundleError(
                f"{name}: '{key}' does not hold the {size} bytes its shape {header.shape} needs"
            )
        order = "F" if header.fortran else "C"
        arrays[key] = np.frombuffer(data, header.dtype).reshape(header.shape, order=order)
    return arrays


def _open_npz(name: str, data: bytes) -> zipfile.ZipFile:
    if data.startswith(b"\x93NUMPY"):
        raise BundleError(
            f"{name} is not a readable numpy archive: it holds one .npy array, not an .npz "
            "archive of named arrays"
        )
    directory = _zip_directory_bytes(data)
    if directory > MAX_NPZ_DIRECTORY_BYTES:
        raise BundleError(
            f"{name}: its zip directory of {directory} bytes lists far more arrays than a "
            f"bundle's {name} holds"
        )
    return zipfile.ZipFile(io.BytesIO(data))


def _load_weights(config: SBNConfig, data: bytes) -> dict[str, np.ndarray]:
    expected = expected_weight_shapes(config)
    with _parsing(WEIGHTS), _open_npz(WEIGHTS, data) as archive:
        members = _npz_members(WEIGHTS, archive)
        missing = sorted(set(expected) - set(members))
        extra = sorted(set(members) - set(expected))
        if missing or extra:
            raise BundleError(
                f"{WEIGHTS}: missing weights {shown(missing)}, unexpected weights {shown(extra)}"
            )
        headers = _npz_headers(WEIGHTS, archive, members)
        for key, shape in expected.items():
            header = headers[key]
            if header.shape != shape:
                raise BundleError(
                    f"{WEIGHTS}: '{key}' has shape {shown(header.shape)}, the architecture "
                    f"needs {shape}"
                )
            if header.dtype != np.float32:
                raise BundleError(f"{WEIGHTS}: '{key}' is {header.dtype}, expected float32")
        weights = _npz_arrays(WEIGHTS, archive, members, headers)
    for key, array in weights.items():
        if not np.isfinite(array).all():
            raise BundleError(f"{WEIGHTS}: '{key}' contains NaN or infinite values")
    return weights


def _load_reference(config: SBNConfig, data: bytes) -> Reference:
    names = ["loads", "last_timestamps", "outputs"] + (
        ["temperatures"] if config.use_temperature else []
    )
    with _parsing(REFERENCE), _open_npz(REFERENCE, data) as archive:
        members = _npz_members(REFERENCE, archive)
        for key in names:
            if key not in members:
                raise BundleError(f"{REFERENCE}: no '{key}' array")
        extra = sorted(set(members) - set(names))
        if extra:
            raise BundleError(
                f"{REFERENCE}: unexpected array(s) {shown(extra)}; it holds {', '.join(names)}"
            )
        headers = _npz_headers(REFERENCE, archive, members)
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
        arrays = _npz_arrays(REFERENCE, archive, members, headers)
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
        return SBNConfig.from_dict(_json_object(ARCHITECTURE, data))
    except ArchitectureError as exc:
        raise BundleError(f"{ARCHITECTURE}: {exc}") from None


def _load_scaling(data: bytes) -> Scaling:
    values = _json_object(SCALING, data)
    known = set(Scaling.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise BundleError(f"{SCALING}: unknown scaling field(s) {shown(unknown)}")
    numbers = {key: _number(value) for key, value in values.items()}
    for key, number in numbers.items():
        if number is None:
            raise BundleError(
                f"{SCALING}: {key} is {shown(values[key])}, not a finite number a float holds"
            )
    try:
        return Scaling.from_dict(numbers)  # type: ignore[arg-type]
    except ScalingError as exc:
        raise BundleError(f"{SCALING}: {exc}") from None


def _tolerance(manifest: dict[str, object]) -> ParityTolerance:
    parity = manifest.get("parity")
    atol, rtol = (
        (_number(parity.get("atol")), _number(parity.get("rtol")))
        if isinstance(parity, dict)
        else (None, None)
    )
    if atol is None or rtol is None or atol < 0 or rtol < 0:
        raise BundleError(
            "manifest has no valid 'parity' tolerance {atol, rtol}: two finite numbers >= 0"
        )
    return ParityTolerance(atol, rtol)


def load_bundle_dir(
    directory: Path,
    public_key: Ed25519PublicKey | None = None,
    parity_limit: ParityLimit = DEFAULT_PARITY_LIMIT,
) -> Bundle:
    """Loads and verifies a bundle folder: digests, signature, layout, and the node's limits."""
    directory = Path(directory)
    with _folder(directory) as folder:
        manifest, table = _read_manifest(folder, directory)
        if directory.name != manifest["model_id"]:
            raise BundleError(
                f"folder {directory.name!r} holds model_id {manifest['model_id']!r}: a bundle's "
                "folder must be named by its model_id"
            )
        _check_signature(manifest, public_key)
        tolerance = _tolerance(manifest)
        contents = _read_files(folder, table)
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


class _BoundedReader:
    """A tar stream that refuses to be read or moved past ``limit`` bytes.

    tarfile reads an extended header (a long name, pax records) whole, as large as its own header
    says; this refuses such a read before it happens, and bounds what any archive expands to.
    """

    def __init__(self, raw: BinaryIO, limit: int) -> None:
        self._raw = raw
        self._limit = limit

    def _refuse_beyond(self, end: int) -> None:
        if end > self._limit:
            raise BundleError(
                f"the archive expands to more than {self._limit} bytes; a bundle's files hold "
                f"at most {MAX_BUNDLE_BYTES}"
            )

    def read(self, size: int = -1) -> bytes:
        position = self._raw.tell()
        if size < 0:
            size = self._limit - position
        self._refuse_beyond(position + size)
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._raw.tell()
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a bundle archive is read from its start")
        self._refuse_beyond(offset)
        return self._raw.seek(offset)

    def tell(self) -> int:
        return self._raw.tell()


@contextmanager
def _tar_stream(path: Path) -> Iterator[tarfile.TarFile]:
    """The archive at ``path`` (plain, gzip, bzip2 or xz), read through a _BoundedReader."""
    with path.open("rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        opener = next((o for m, o in _COMPRESSED_TARS if magic.startswith(m)), None)
        with opener(raw) if opener else raw as stream:
            bounded = _BoundedReader(stream, MAX_BUNDLE_BYTES + ARCHIVE_HEADER_BYTES)
            with tarfile.open(fileobj=bounded, mode="r:") as archive:  # type: ignore[call-overload]
                yield archive


def _extract(path: Path, scratch: Path) -> Path:
    """Extracts the archive's bundle folder into ``scratch``, checking each member (its kind,
    name, place and size) before a byte of it is written; returns the folder."""
    top = ""
    written: set[str] = set()
    total = 0
    with _tar_stream(path) as archive:
        for count, member in enumerate(archive, start=1):
            if count > MAX_ARCHIVE_MEMBERS:
                raise BundleError(f"the archive holds more than {MAX_ARCHIVE_MEMBERS} members")
            name = member.name
            parts = [part for part in name.split("/") if part not in ("", ".")]
            if name.startswith("/") or ".." in parts:
                raise BundleError(
                    f"member {shown(name)} would be extracted outside the destination folder"
                )
            if not (member.isfile() or member.isdir()) or member.issparse():
                raise BundleError(f"member {shown(name)} is not a file or folder")
            if not parts:
                continue
            if (top and parts[0] != top) or (member.isfile() and len(parts) == 1):
                raise BundleError("the archive must hold exactly one bundle folder")
            if not is_model_id(parts[0]):
                raise BundleError(f"the archive's folder {shown(parts[0])} is not a model_id")
            top = parts[0]
            (scratch / top).mkdir(exist_ok=True)
            if member.isdir() and len(parts) == 1:
                continue
            if member.isdir() or len(parts) != 2:
                raise BundleError(f"member {shown(name)}: a bundle holds no nested folders")
            file = parts[1]
            if file not in MAX_FILE_BYTES:
                raise BundleError(
                    f"member {shown(name)} is not a bundle file (a bundle holds {MANIFEST}, "
                    f"{', '.join(BUNDLE_FILES)})"
                )
            if file in written:
                raise BundleError(f"member {shown(name)} appears twice")
            if member.size > MAX_FILE_BYTES[file]:
                raise BundleError(
                    f"member {shown(name)} holds {member.size} bytes, more than the "
                    f"{MAX_FILE_BYTES[file]} bytes a bundle's {file} may hold"
                )
            total += member.size
            if total > MAX_BUNDLE_BYTES:
                raise BundleError(
                    f"the archive's files hold more than the {MAX_BUNDLE_BYTES} bytes a bundle "
                    "may hold"
                )
            source = archive.extractfile(member)
            if source is None:
                raise BundleError(f"member {shown(name)} has no content")
            target = os.open(
                scratch / top / file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644
            )
            with source, os.fdopen(target, "wb") as handle:
                shutil.copyfileobj(source, handle)
            written.add(file)
    if not top:
        raise BundleError("the archive must hold exactly one bundle folder")
    return scratch / top


@contextmanager
def unpacked(path: Path) -> Iterator[Path]:
    """Yields the bundle folder of ``path``: the directory itself or a tar's single top folder.

    The archive is extracted into a fresh temporary folder, removed afterwards. It may hold
    MAX_ARCHIVE_MEMBERS members and MAX_BUNDLE_BYTES of files, as on a node that installs it,
    each file within its MAX_FILE_BYTES.
    """
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BundleError(f"{path}: neither a bundle directory nor a tar archive")
    scratch = Path(tempfile.mkdtemp(prefix="edgecast-bundle-"))
    try:
        try:
            folder = _extract(path, scratch)
        except BundleError as exc:
            raise BundleError(f"{path}: cannot unpack: {exc}") from None
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise BundleError(
                f"{path}: cannot unpack (truncated, or not a tar archive): {_reason(exc)}"
            ) from None
        yield folder
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_bundle(
    path: Path,
    public_key: Ed25519PublicKey | None = None,
    parity_limit: ParityLimit = DEFAULT_PARITY_LIMIT,
) -> Bundle:
    """Loads and verifies a bundle directory or tar archive (digests, signature, layout)."""
    with unpacked(path) as directory:
        return load_bundle_dir(directory, public_key, parity_limit)


def _checked_manifest(directory: Path) -> dict[str, object]:
    """The manifest of a bundle folder whose every file matches it."""
    with _folder(directory) as folder:
        manifest, table = _read_manifest(folder, directory)
        _read_files(folder, table)
    return manifest


def sign_bundle(directory: Path, signing_key: Ed25519PrivateKey) -> str:
    """Signs an existing bundle after checking every digest; returns the key id used."""
    directory = Path(directory)
    manifest = _checked_manifest(directory)
    manifest["signature"] = sign_manifest(manifest, signing_key)
    staged = directory / f".{MANIFEST}.tmp"
    staged.write_bytes(_json_bytes(manifest))
    staged.replace(directory / MANIFEST)
    return str(manifest["signature"]["key_id"])  # type: ignore[index]


def pack_bundle(directory: Path, archive: Path) -> Path:
    """Writes ``directory`` as a gzip tar holding one folder named by the model_id."""
    manifest = _checked_manifest(Path(directory))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=str(manifest["model_id"]))
    return Path(archive)
