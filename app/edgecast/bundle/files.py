"""A bundle folder's files, read through descriptors that never follow a link.

Each file is read once into memory, to exactly the size the manifest gives and only after its
size on disk agrees, and hashed; it is parsed from those same bytes, so nothing can change
between check and use.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from edgecast.bundle.errors import BundleError
from edgecast.store_rules import MANIFEST, shown


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def open_folder(directory: Path) -> Iterator[int]:
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


def open_file(folder: int, name: str, missing: str) -> BinaryIO:
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


def read_bounded(handle: BinaryIO, name: str, size: int) -> bytes:
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


def read_files(folder: int, table: dict[str, tuple[int, str]]) -> dict[str, bytes]:
    """The bytes of each file in ``table`` (name: size, sha256), refused when the folder holds
    another file or a file another size or digest."""
    try:
        present = set(os.listdir(folder)) - {MANIFEST}
    except OSError as exc:
        raise BundleError(f"the bundle folder cannot be listed: {exc.strerror}") from None
    unexpected = sorted(present - set(table))
    if unexpected:
        raise BundleError(f"unexpected file(s) {shown(unexpected)} not listed in the manifest")
    contents = {}
    for name, (size, digest) in sorted(table.items()):
        with open_file(folder, name, f"missing file {name!r} listed in the manifest") as handle:
            data = read_bounded(handle, name, size)
        found = sha256(data)
        if found != digest:
            raise BundleError(
                f"{name}: sha256 {found} does not match the manifest's {digest} "
                "(corrupted or modified file)"
            )
        contents[name] = data
    return contents
