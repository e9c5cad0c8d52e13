"""The rules of a node's model store, in the one file that both sides of the store read.

The predictor reads the store as ``edgecast.store_rules`` (through ``edgecast.store``); the
``edgecast_bundle_store`` module that installs bundles on the node imports the same file as
``ansible.module_utils.edgecast_store_rules`` (``plugins/module_utils/edgecast_store_rules.py``
links here), and Ansible sends it to the node with the module. The node has the Python standard
library only, possibly Python 3.8 (Ubuntu 20.04), so this file uses nothing else: annotations are
never evaluated, and no newer syntax or standard library API is used.

A store holds one folder per bundle, ``<store>/<model_id>/``. Only a folder named by a model_id
and holding a manifest is a bundle. A model_id never starts with a dot, so the dot-named folders
that installs work in (staging copies, bundles renamed aside while replaced) are never taken for
bundles, and the ones an interrupted install leaves behind are recognised and cleaned. Bundles
are ordered by their manifest's ``created``, then by name: the predictor serves the newest by
default, and pruning keeps the newest.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterable

MANIFEST = "manifest.json"
MODEL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STAGING_PREFIX = ".staging-"
REPLACED_PREFIX = ".replaced-"
MAX_MANIFEST_BYTES = 1 << 20
# Every file of a bundle, its manifest included: room for the largest network a node builds
# (edgecast.architecture's ranges), its LiteRT export and its reference cases.
MAX_BUNDLE_BYTES = 80 << 20
# Members of a bundle archive: its folder and its half dozen files, with room to spare.
MAX_ARCHIVE_MEMBERS = 64
# An extended header (pax records, a GNU long name) of one archive member: a model_id and a file
# name, with the records tar writers add (times, xattrs), fit many times over.
MAX_EXTENDED_HEADER_BYTES = 64 << 10
EXTENDED_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)
MAX_SHOWN_CHARS = 160  # a model_id and a file name fit
DEFAULT_STORE = "/var/lib/edgecast/models"
DEFAULT_KEEP = 3


class StoreError(Exception):
    """The store refuses a file or a bundle; the message says what is wrong."""


def is_model_id(name: object) -> bool:
    """Whether ``name`` is a model_id, and so a safe folder name in the store."""
    return isinstance(name, str) and MODEL_ID_PATTERN.match(name) is not None


def shown(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters: a value from a bundle in a message, which
    stays short however long the value is."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def option_error(store: str, keep: int, protect: Iterable[str]) -> str:
    """Why the store options are wrong; an empty string when they are fine."""
    if not posixpath.isabs(store):
        return f"store must be an absolute path on the node, not {store!r}"
    if keep < 1:
        return f"keep must be at least 1 (the bundle being installed), not {keep}"
    bad = [name for name in protect if not is_model_id(name)]
    if bad:
        return f"protect holds names that are not model ids: {bad}"
    return ""


class CappedTarInfo(tarfile.TarInfo):
    """A tar member header that refuses what would make tarfile read without bound.

    tarfile reads an extended header (pax records, a GNU long name) into memory whole, as large
    as the 512-byte block before it says, and follows a GNU sparse member's chain of extension
    blocks; neither belongs in a bundle archive. Given to ``tarfile.open`` as ``tarinfo``, this
    refuses both once only that block has been read. A ``StoreError``, not a tarfile header
    error: tarfile takes those for the end of the archive.
    """

    @classmethod
    def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
        info = super().frombuf(buf, encoding, errors)
        if info.type in EXTENDED_HEADER_TYPES and info.size > MAX_EXTENDED_HEADER_BYTES:
            raise StoreError(
                f"the archive has an extended header (pax or GNU long name, type "
                f"{info.type.decode('ascii', 'replace')!r}) of {info.size} bytes; a bundle "
                f"archive's may hold at most {MAX_EXTENDED_HEADER_BYTES}"
            )
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise StoreError(
                f"archive member {shown(info.name)} is a sparse file; bundles hold regular files"
            )
        return info


def open_regular(path: str) -> int:
    """A read descriptor of ``path``, refusing symbolic links and anything but a regular file.

    Opened non-blocking, so that a named pipe is refused instead of waiting for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{os.path.basename(path)} is a symbolic link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"{os.path.basename(path)} is not a regular file")
    return fd


def read_regular(path: str, limit: int) -> bytes:
    """The content of the regular file ``path``, refused when larger than ``limit`` bytes."""
    with os.fdopen(open_regular(path), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise StoreError(f"{os.path.basename(path)} is larger than {limit} bytes")
    return data


def manifest_created(folder: str) -> str:
    """The manifest's ``created``, by which bundles are ordered; "" when it cannot be read."""
    try:
        value = json.loads(read_regular(os.path.join(folder, MANIFEST), MAX_MANIFEST_BYTES))
    except (ValueError, OSError, StoreError):
        return ""
    return str(value.get("created", "")) if isinstance(value, dict) else ""


def list_bundles(store: str) -> list[tuple[str, str]]:
    """(created, model_id) of every bundle in the store, oldest first."""
    if not os.path.isdir(store):
        return []
    found = []
    for name in os.listdir(store):
        folder = os.path.join(store, name)
        if (
            is_model_id(name)
            and not os.path.islink(folder)
            and os.path.isfile(os.path.join(folder, MANIFEST))
        ):
            found.append((manifest_created(folder), name))
    return sorted(found)


def leftovers(store: str) -> list[str]:
    """Folders of interrupted installs: staging copies and replaced bundles not yet removed."""
    if not os.path.isdir(store):
        return []
    return sorted(
        name
        for name in os.listdir(store)
        if name.startswith(STAGING_PREFIX) or name.startswith(REPLACED_PREFIX)
    )


def prune_plan(
    bundles: list[tuple[str, str]], keep: int, model_id: str, protect: Iterable[str]
) -> list[str]:
    """The bundles to remove, oldest first: all but ``model_id`` (the one being installed), the
    ``keep - 1`` newest others and the protected ones (the model serving, a rollback target)."""
    kept = set(protect)
    others = [name for _, name in bundles if name != model_id]
    newest = set(others[len(others) - (keep - 1) :]) if keep > 1 else set()
    return [name for name in others if name not in newest and name not in kept]
