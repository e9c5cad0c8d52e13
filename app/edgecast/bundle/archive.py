"""Bundle archives: a tar (plain, gzip, bzip2 or xz) of one folder named by its model_id.

An archive is untrusted until its folder has been loaded, so it is unpacked with the node's caps:
a stream that refuses to expand past the bundle bound, each member's kind, name, place and size
checked before a byte of it is written, and a truncated archive a refusal like any other.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from edgecast.bundle.errors import BundleError, cut_short
from edgecast.bundle.layout import BUNDLE_FILES, MAX_FILE_BYTES
from edgecast.bundle.manifest import checked_manifest
from edgecast.store_rules import (
    MANIFEST,
    MAX_ARCHIVE_MEMBERS,
    MAX_BUNDLE_BYTES,
    CappedTarInfo,
    StoreError,
    is_model_id,
    shown,
)

# What a bundle archive may hold besides its files: a header or two per member, and its end.
ARCHIVE_HEADER_BYTES = MAX_ARCHIVE_MEMBERS * 4096 + 20480
COMPRESSED_TARS: tuple[tuple[bytes, Callable[[BinaryIO], BinaryIO]], ...] = (
    (b"\x1f\x8b", lambda raw: gzip.GzipFile(fileobj=raw, mode="rb")),
    (b"BZh", bz2.BZ2File),
    (b"\xfd7zXZ\x00", lzma.LZMAFile),
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
        opener = next((o for m, o in COMPRESSED_TARS if magic.startswith(m)), None)
        with opener(raw) if opener else raw as stream:
            bounded = _BoundedReader(stream, MAX_BUNDLE_BYTES + ARCHIVE_HEADER_BYTES)
            with tarfile.open(  # type: ignore[call-overload]
                fileobj=bounded, mode="r:", tarinfo=CappedTarInfo
            ) as archive:
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
        except (BundleError, StoreError) as exc:
            raise BundleError(f"{path}: cannot unpack: {exc}") from None
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise BundleError(
                f"{path}: cannot unpack (truncated, or not a tar archive): {cut_short(exc)}"
            ) from None
        yield folder
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def pack_bundle(directory: Path, archive: Path) -> Path:
    """Writes ``directory`` as a gzip tar holding one folder named by the model_id."""
    manifest = checked_manifest(Path(directory))
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=str(manifest["model_id"]))
    return Path(archive)
