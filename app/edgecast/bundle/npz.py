"""Bounded reading of a bundle's ``.npz`` archives: headers first, data only to the size they give.

zipfile reads an archive's whole central directory before anything else, and numpy's reader
decompresses an array as large as its header says; here the directory's size is checked first,
every array's header is read (and checked by the caller) before any data is decompressed, and
each array is read to exactly the size of its checked shape.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edgecast.bundle.errors import BundleError, cut_short
from edgecast.store_rules import shown

# zipfile reads an archive's whole central directory (a few dozen bytes per array) before
# anything else; this keeps a crafted .npz from listing millions of members.
MAX_NPZ_DIRECTORY_BYTES = 64 << 10


@dataclass(frozen=True)
class ArrayHeader:
    """What an .npy header says of its array; ``offset`` is where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int


@contextmanager
def parsing(name: str) -> Iterator[None]:
    """Any failure of zipfile or numpy's reader on a file's untrusted bytes is a refusal."""
    try:
        yield
    except BundleError:
        raise
    except Exception as exc:
        raise BundleError(f"{name} is not a readable numpy archive: {cut_short(exc)}") from None


def zip_directory_bytes(data: bytes) -> int:
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


def npz_members(name: str, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key == info.filename or key in members:
            raise BundleError(
                f"{name}: member {shown(info.filename)} is not a uniquely named .npy array"
            )
        members[key] = info
    return members


def npz_headers(
    name: str, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
) -> dict[str, ArrayHeader]:
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
        headers[key] = ArrayHeader(shape, dtype, fortran, offset)
    return headers


def npz_arrays(
    name: str,
    archive: zipfile.ZipFile,
    members: dict[str, zipfile.ZipInfo],
    headers: dict[str, ArrayHeader],
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


def open_npz(name: str, data: bytes) -> zipfile.ZipFile:
    if data.startswith(b"\x93NUMPY"):
        raise BundleError(
            f"{name} is not a readable numpy archive: it holds one .npy array, not an .npz "
            "archive of named arrays"
        )
    directory = zip_directory_bytes(data)
    if directory > MAX_NPZ_DIRECTORY_BYTES:
        raise BundleError(
            f"{name}: its zip directory of {directory} bytes lists far more arrays than a "
            f"bundle's {name} holds"
        )
    return zipfile.ZipFile(io.BytesIO(data))
