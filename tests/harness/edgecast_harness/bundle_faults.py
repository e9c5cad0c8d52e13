"""Fault injection for model bundles: copies of a good bundle with exactly one thing wrong.

Every fault works on real bundle files the way a broken copy, a bad disk or an attacker would
change them. Faults that must get past the digest check (so that a later check has to catch
them) rewrite the manifest's size and sha256 for the file they change, exactly as an honest
but wrong cloud build would. Each fault returns the fragments that the refusal message must
contain, so a test can insist on a specific message and not just on a refusal.

The hostile faults are an attacker's: files and archives that claim or expand to gigabytes,
JSON nested a hundred thousand deep, a bundle that loosens its own parity gate. Their big files
are never materialised: a sparse file, or the same compressed mebibyte of zeros repeated, so a
gibibyte costs a megabyte and a fraction of a second to make.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

MANIFEST = "manifest.json"
ARCHITECTURE = "architecture.json"
WEIGHTS = "weights.npz"
SCALING = "scaling.json"
REFERENCE = "reference.npz"
LITERT = "model.tflite"
GIB = 1 << 30
MIB = 1 << 20
# Whatever a bundle holds, a refusal is short and names the problem in the node's words: never
# a traceback, nor a library's advice meant for its programmers.
MAX_REFUSAL_CHARS = 1000
NEVER_IN_A_REFUSAL = ("Traceback", "allow_pickle", "context manager", "ufunc")

# A fault changes a bundle directory in place and returns what the refusal must mention.
Inject = Callable[[Path], list[str]]
# An archive fault writes an archive made from a good bundle directory and returns the same.
Build = Callable[[Path, Path], list[str]]


@dataclass(frozen=True)
class Fault:
    name: str
    inject: Inject

    def injected_copy(self, source: Path, parent: Path, prefix: str) -> tuple[Path, list[str]]:
        """A clone of ``source`` under ``parent``, named ``<prefix>-<name>``, with this fault
        injected; and what the refusal must mention."""
        bundle = clone_bundle(source, parent, f"{prefix}-{self.name}")
        return bundle, self.inject(bundle)


@dataclass(frozen=True)
class ArchiveFault:
    name: str
    build: Build


def by_name(*tables: Sequence[Fault | ArchiveFault]) -> list[pytest.ParameterSet]:
    """The faults of ``tables`` as pytest parameters, each with its name as its id."""
    return [pytest.param(fault, id=fault.name) for table in tables for fault in table]


def refusal_problems(message: str, fragments: list[str]) -> list[str]:
    """What is wrong with a refusal message: fragments it lacks, words it must never hold, and
    length beyond MAX_REFUSAL_CHARS. Empty for a good refusal."""
    problems = [f"lacks {fragment!r}" for fragment in fragments if fragment not in message]
    problems += [f"holds {word!r}" for word in NEVER_IN_A_REFUSAL if word in message]
    if len(message) > MAX_REFUSAL_CHARS:
        problems.append(f"is {len(message)} characters long")
    return problems


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


def rewrite(bundle: Path, name: str, data: bytes) -> None:
    """Replaces the file ``name`` with ``data`` and makes the manifest's size and sha256 match,
    as an honest but wrong build would."""
    (bundle / name).write_bytes(data)
    refresh_digest(bundle, name)


def rewrite_npz(bundle: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Replaces the .npz ``name`` with one of ``arrays``, the manifest made to match."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    rewrite(bundle, name, buffer.getvalue())


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
    weights = load_npz(bundle / WEIGHTS)
    right = weights["context/kernel"].shape
    weights["context/kernel"] = np.ascontiguousarray(weights["context/kernel"][:-1])
    wrong = weights["context/kernel"].shape
    rewrite_npz(bundle, WEIGHTS, weights)
    return [WEIGHTS, "'context/kernel'", f"has shape {wrong}", f"needs {right}"]


def nan_weight(bundle: Path) -> list[str]:
    """Every shape right, one NaN in base/kernel, digests made to match."""
    weights = load_npz(bundle / WEIGHTS)
    kernel = weights["base/kernel"].copy()
    kernel.flat[0] = np.nan
    weights["base/kernel"] = kernel
    rewrite_npz(bundle, WEIGHTS, weights)
    return [WEIGHTS, "'base/kernel'", "NaN"]


def shift_reference_outputs(bundle: Path, kwh: float = 1.0) -> list[str]:
    """The cloud's reference forecasts all 1 kWh off, digests made to match."""
    reference = load_npz(bundle / REFERENCE)
    reference["outputs"] = reference["outputs"] + np.asarray(kwh, dtype=reference["outputs"].dtype)
    rewrite_npz(bundle, REFERENCE, reference)
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
    data = (bundle / WEIGHTS).read_bytes()
    rewrite(bundle, WEIGHTS, data[: len(data) // 2])
    return [f"{WEIGHTS} is not a readable numpy archive"]


def reference_loads_scalar(bundle: Path) -> list[str]:
    """reference.npz 'loads' a 0-d array instead of (cases, window)."""
    reference = load_npz(bundle / REFERENCE)
    reference["loads"] = np.asarray(1.0)
    rewrite_npz(bundle, REFERENCE, reference)
    return [REFERENCE, "'loads'"]


def reference_outputs_text(bundle: Path) -> list[str]:
    """reference.npz 'outputs' of the right shape, stored as text."""
    reference = load_npz(bundle / REFERENCE)
    reference["outputs"] = reference["outputs"].astype(str)
    rewrite_npz(bundle, REFERENCE, reference)
    return [REFERENCE, "'outputs'"]


MALFORMED_FAULTS = [
    Fault("weights-not-a-zip-archive", weights_not_a_zip_archive),
    Fault("reference-loads-0d-array", reference_loads_scalar),
    Fault("reference-outputs-as-text", reference_outputs_text),
]


# --- hostile bundles: an attacker's files, each refused before it costs memory or time ----------


def _edit_manifest(bundle: Path, edit: Callable[[dict], object]) -> None:
    manifest = read_manifest(bundle)
    edit(manifest)
    write_manifest(bundle, manifest)


def _edit_json(bundle: Path, name: str, edit: Callable[[dict], object]) -> None:
    """Changes one JSON file of the bundle, with the manifest's digest made to match."""
    value = json.loads((bundle / name).read_text())
    edit(value)
    rewrite(bundle, name, json.dumps(value).encode())


def _deflate_piece(data: bytes) -> bytes:
    """Raw deflate blocks of ``data`` ending on a full flush: such pieces join end to end."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


@cache
def deflated_zeros(prefix: bytes, zeros: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``prefix`` then ``zeros`` zero bytes, and its CRC-32: one
    compressed mebibyte of zeros repeated, so a gibibyte takes a megabyte (and the CRC half a
    second)."""
    whole, rest = divmod(zeros, MIB)
    stream = [_deflate_piece(prefix), _deflate_piece(bytes(MIB)) * whole]
    stream += [_deflate_piece(bytes(rest)), zlib.compressobj(9, zlib.DEFLATED, -15).flush()]
    crc = zlib.crc32(prefix)
    for _ in range(whole):
        crc = zlib.crc32(bytes(MIB), crc)
    return b"".join(stream), zlib.crc32(bytes(rest), crc)


def zip_archive(entries: list[tuple[str, bytes, bool, int, int]]) -> bytes:
    """A zip of (name, data, deflated, crc, size) entries, written by hand so that an entry can
    hold a deflate stream made elsewhere (zipfile compresses everything itself)."""
    out, directory = bytearray(), bytearray()
    for name, data, deflated, crc, size in entries:
        encoded, method, offset = name.encode(), 8 if deflated else 0, len(out)
        fields = (method, 0, 0x21, crc, len(data), size, len(encoded), 0)  # date: 1980-01-01
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, *fields) + encoded + data
        directory += struct.pack(
            "<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, *fields, 0, 0, 0, 0, offset
        )
        directory += encoded
    end = struct.pack(
        "<4s4H2IH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(out), 0
    )
    return bytes(out + directory + end)


def npy_header(dtype: str, shape: tuple[int, ...]) -> bytes:
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def npz_with_zeros(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> bytes:
    """An .npz of ``arrays`` (stored) and a float32 array ``key`` of ``shape``, all zeros,
    deflated: a gibibyte array in a megabyte."""
    entries = []
    for name, array in arrays.items():
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        entries.append((f"{name}.npy", data, False, zlib.crc32(data), len(data)))
    header = npy_header("<f4", shape)
    zeros = 4 * int(np.prod(shape))
    stream, crc = deflated_zeros(header, zeros)
    entries.append((f"{key}.npy", stream, True, crc, len(header) + zeros))
    return zip_archive(entries)


def long_file_name_in_manifest(bundle: Path) -> list[str]:
    """The manifest lists a file with a 300-character name (ENAMETOOLONG, were it opened)."""
    entry = {"sha256": "0" * 64, "size": 1}
    _edit_manifest(bundle, lambda m: m["files"].__setitem__("x" * 300, entry))
    return [MANIFEST, "(304 characters)", "not bundle files"]


def deeply_nested_manifest(bundle: Path) -> list[str]:
    """A manifest.json nested 100,000 deep (200 kB)."""
    (bundle / MANIFEST).write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    return [f"{MANIFEST} nests arrays or objects too deeply"]


def sparse_gib_weights(bundle: Path) -> list[str]:
    """weights.npz swapped for a sparse file of a gibibyte; the manifest as it was."""
    size = read_manifest(bundle)["files"][WEIGHTS]["size"]
    with (bundle / WEIGHTS).open("wb") as sparse:
        sparse.truncate(GIB)
    return [f"{WEIGHTS}: {GIB} bytes but the manifest says {size}", "truncated or replaced"]


def sparse_gib_weights_listed(bundle: Path) -> list[str]:
    """A sparse gibibyte weights.npz, and the manifest saying so."""
    sparse_gib_weights(bundle)
    _edit_manifest(bundle, lambda m: m["files"][WEIGHTS].__setitem__("size", GIB))
    return [f"{WEIGHTS} of {GIB} bytes is larger than the", f"bytes a bundle's {WEIGHTS} may hold"]


def reference_with_gib_zero_array(bundle: Path) -> list[str]:
    """reference.npz with an extra gibibyte of zeros, deflated to a megabyte; digests match."""
    rewrite(bundle, REFERENCE, npz_with_zeros(load_npz(bundle / REFERENCE), "padding", (GIB // 4,)))
    return [REFERENCE, "unexpected array(s) ['padding']"]


def reference_loads_of_a_gib(bundle: Path) -> list[str]:
    """reference.npz whose 'loads' is a gibibyte (zeros, deflated): the right array, far too big."""
    arrays = load_npz(bundle / REFERENCE)
    window = arrays.pop("loads").shape[1]
    shape = (GIB // 4 // window, window)
    rewrite(bundle, REFERENCE, npz_with_zeros(arrays, "loads", shape))
    return [REFERENCE, f"'loads' has shape {shape}", "with 1 <= n <= 64"]


def horizon_of_ten_million(bundle: Path) -> list[str]:
    _edit_json(bundle, ARCHITECTURE, lambda a: a.__setitem__("horizon", 10**7))
    return [ARCHITECTURE, "horizon 10000000 is outside the range 1 to 168"]


def a_million_boosters(bundle: Path) -> list[str]:
    _edit_json(bundle, ARCHITECTURE, lambda a: a.__setitem__("boosters", 10**6))
    return [ARCHITECTURE, "boosters 1000000 is outside the range 0 to 16"]


def use_temperature_yes(bundle: Path) -> list[str]:
    _edit_json(bundle, ARCHITECTURE, lambda a: a.__setitem__("use_temperature", "yes"))
    return [ARCHITECTURE, "use_temperature must be true or false, not 'yes'"]


def size_as_a_string(bundle: Path) -> list[str]:
    """The manifest's size of weights.npz is the right number, written as a string."""
    size = read_manifest(bundle)["files"][WEIGHTS]["size"]
    _edit_manifest(bundle, lambda m: m["files"][WEIGHTS].__setitem__("size", str(size)))
    return [f"the size of {WEIGHTS} is '{size}', not a whole number of bytes"]


def random_bytes_as_weights(bundle: Path) -> list[str]:
    size = (bundle / WEIGHTS).stat().st_size
    rewrite(bundle, WEIGHTS, np.random.default_rng(7).bytes(size))
    return [f"{WEIGHTS} is not a readable numpy archive"]


def single_npy_as_weights(bundle: Path) -> list[str]:
    """weights.npz holding one .npy array instead of an archive of named arrays."""
    buffer = io.BytesIO()
    np.save(buffer, load_npz(bundle / WEIGHTS)["context/kernel"])
    rewrite(bundle, WEIGHTS, buffer.getvalue())
    return [f"{WEIGHTS} is not a readable numpy archive", "one .npy array, not an .npz archive"]


def scaling_of_400_digits(bundle: Path) -> list[str]:
    text = (bundle / SCALING).read_text()
    value = json.loads(text)["load_mean"]
    rewrite(bundle, SCALING, text.replace(json.dumps(value), "9" * 400, 1).encode())
    return [SCALING, "load_mean is 9999", "(400 characters)", "not a finite number"]


def parity_switched_off(bundle: Path) -> list[str]:
    """The cloud's reference forecasts 79.6 kWh off (as with altered weights), and the manifest
    asking for a tolerance of 1e300 kWh, which would pass them."""
    shift_reference_outputs(bundle, 79.6)
    _edit_manifest(bundle, lambda m: m["parity"].__setitem__("atol", 1e300))
    return ["asks for a parity tolerance of atol 1e+300 kWh", "this node allows at most atol"]


def manifest_symlinked_outside(bundle: Path) -> list[str]:
    """manifest.json a link to the (identical) manifest outside the bundle."""
    outside = bundle.parent / f"{bundle.name}-outside-{MANIFEST}"
    (bundle / MANIFEST).replace(outside)
    (bundle / MANIFEST).symlink_to(outside.resolve())
    return [f"'{MANIFEST}' is a symbolic link"]


def fifo_as_weights(bundle: Path) -> list[str]:
    """weights.npz a named pipe: opened for reading, it would wait for a writer forever."""
    (bundle / WEIGHTS).unlink()
    os.mkfifo(bundle / WEIGHTS)
    return [f"'{WEIGHTS}' is not a regular file"]


def weights_listing_thousands_of_arrays(bundle: Path) -> list[str]:
    """weights.npz whose zip directory lists 3000 members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(3000):
            archive.writestr(f"w{i}.npy", b"")
    rewrite(bundle, WEIGHTS, buffer.getvalue())
    return [WEIGHTS, "lists far more arrays than a bundle's"]


def _window(bundle: Path) -> int:
    return int(json.loads((bundle / ARCHITECTURE).read_text())["window"])


def _declare_load_input(bundle: Path, dims: tuple[int, int]) -> None:
    """model.tflite with the shape its 'load' input declares rewritten in place, digests made to
    match. The flatbuffer's vector keeps its length, so every offset in the file stays valid and
    only the shape is hostile."""
    data = (bundle / LITERT).read_bytes()
    declared = struct.pack("<3i", 2, 1, _window(bundle))
    assert data.count(declared) == 1, f"{LITERT} declares (1, window) other than once"
    rewrite(bundle, LITERT, data.replace(declared, struct.pack("<3i", 2, *dims)))


def litert_input_of_a_gib(bundle: Path) -> list[str]:
    """model.tflite whose 'load' input is declared a gibibyte long (2^28 float32 values)."""
    _declare_load_input(bundle, (1, 1 << 28))
    return [
        f"{LITERT} input 'load' is float32 of shape (1, 268435456)",
        f"the architecture gives float32 of shape (1, {_window(bundle)})",
    ]


def litert_batch_of_4096(bundle: Path) -> list[str]:
    """model.tflite whose 'load' input is declared for 4096 cases at once (10 MB)."""
    _declare_load_input(bundle, (4096, _window(bundle)))
    return [f"{LITERT} input 'load' is float32 of shape (4096, {_window(bundle)})"]


def litert_shape_overflowing(bundle: Path) -> list[str]:
    """model.tflite whose 'load' input has a negative dimension: its size overflows."""
    _declare_load_input(bundle, (-1, 1 << 30))
    return [f"{LITERT} cannot be loaded by LiteRT", "invalidly specified"]


HOSTILE_FAULTS = [
    Fault("300-character-file-name", long_file_name_in_manifest),
    Fault("manifest-nested-100000-deep", deeply_nested_manifest),
    Fault("weights-a-sparse-gib", sparse_gib_weights),
    Fault("weights-a-sparse-gib-in-the-manifest-too", sparse_gib_weights_listed),
    Fault("reference-with-an-extra-gib-array", reference_with_gib_zero_array),
    Fault("reference-loads-of-a-gib", reference_loads_of_a_gib),
    Fault("horizon-of-ten-million", horizon_of_ten_million),
    Fault("a-million-boosters", a_million_boosters),
    Fault("use-temperature-yes", use_temperature_yes),
    Fault("size-as-a-string", size_as_a_string),
    Fault("random-bytes-as-weights", random_bytes_as_weights),
    Fault("single-npy-as-weights", single_npy_as_weights),
    Fault("scaling-value-of-400-digits", scaling_of_400_digits),
    Fault("parity-tolerance-of-1e300", parity_switched_off),
    Fault("manifest-symlinked-outside", manifest_symlinked_outside),
    Fault("weights-a-named-pipe", fifo_as_weights),
    Fault("weights-listing-3000-arrays", weights_listing_thousands_of_arrays),
    Fault("litert-input-declared-a-gib", litert_input_of_a_gib),
    Fault("litert-input-declared-for-4096-cases", litert_batch_of_4096),
    Fault("litert-input-size-overflowing", litert_shape_overflowing),
]


# --- hostile archives -------------------------------------------------------------------------


def _tar_header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info.tobuf(tarfile.PAX_FORMAT)


def _tar_file(name: str, data: bytes) -> bytes:
    return _tar_header(name, len(data)) + data + bytes(-len(data) % 512)


def _tar_head(bundle: Path, leave_out: str) -> bytes:
    """The tar of the bundle's folder and its files but one, without the archive's end."""
    head = _tar_header(bundle.name, kind=tarfile.DIRTYPE)
    for path in sorted(bundle.iterdir()):
        if path.name != leave_out:
            head += _tar_file(f"{bundle.name}/{path.name}", path.read_bytes())
    return head


def _gzip_zeros(size: int) -> bytes:
    """Gzip members that expand to ``size`` zero bytes: one compressed mebibyte, repeated."""
    whole, rest = divmod(size, MIB)
    return gzip.compress(bytes(MIB)) * whole + gzip.compress(bytes(rest))


def truncated_tar_gz(bundle: Path, archive: Path) -> list[str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(bundle, arcname=bundle.name)
    data = buffer.getvalue()
    archive.write_bytes(data[: len(data) // 2])
    return ["cannot unpack (truncated, or not a tar archive)"]


def tar_gz_with_gib_member(bundle: Path, archive: Path, size: int = GIB) -> list[str]:
    """The bundle with a weights.npz of ``size`` zeros: a 1 MB .tar.gz that expands to a GiB."""
    member = f"{bundle.name}/{WEIGHTS}"
    head = _tar_head(bundle, WEIGHTS) + _tar_header(member, size)
    end = bytes(-size % 512) + bytes(1024)
    archive.write_bytes(gzip.compress(head) + _gzip_zeros(size) + gzip.compress(end))
    return [f"member '{member}' holds {size} bytes, more than the", "may hold"]


def tar_gz_with_gib_pax_header(bundle: Path, archive: Path) -> list[str]:
    """An extended (pax) header of a gibibyte, which tarfile would read into memory whole."""
    head = _tar_head(bundle, "") + _tar_header("././@PaxHeader", GIB, tarfile.XHDTYPE)
    archive.write_bytes(gzip.compress(head) + _gzip_zeros(GIB) + gzip.compress(bytes(1024)))
    return ["cannot unpack: the archive has an extended header", f"of {GIB} bytes"]


def tar_opening_with_extended_header(archive: Path, kind: bytes, size: int = GIB) -> None:
    """A plain tar whose first member is an extended header (pax records or a GNU long name,
    by ``kind``) of ``size`` zero bytes, written as a sparse file: a gibibyte that costs nothing
    on disk, and a gibibyte of memory to a reader that takes the header whole."""
    with archive.open("wb") as out:
        out.write(_tar_header("././@LongLink", size, kind))
        out.truncate(512 + size + (-size % 512) + 1024)


def tar_gz_of_20000_members(bundle: Path, archive: Path) -> list[str]:
    """The bundle's folder entry 20,000 times over."""
    folder = _tar_header(bundle.name, kind=tarfile.DIRTYPE)
    archive.write_bytes(gzip.compress(folder * 20_000 + bytes(1024)))
    return ["cannot unpack", "more than 64 members"]


ARCHIVE_FAULTS = [
    ArchiveFault("truncated-tar-gz", truncated_tar_gz),
    ArchiveFault("tar-gz-expanding-to-a-gib", tar_gz_with_gib_member),
    ArchiveFault("tar-gz-with-a-gib-pax-header", tar_gz_with_gib_pax_header),
    ArchiveFault("tar-gz-of-20000-members", tar_gz_of_20000_members),
]
