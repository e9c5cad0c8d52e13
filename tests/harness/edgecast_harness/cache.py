"""Results that cost minutes, kept outside the checkout and keyed by what made them.

The root is ``EDGECAST_CACHE`` (default ``~/.cache/edgecast``), shared with
``tests/infra/base-image.sh`` and the cluster build. A key is the sha256 of every input file and
argument, so any change to the code or data that made a result makes a new one; an empty cache
only costs the time to make it again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .paths import REPO


def cache_root() -> Path:
    return Path(os.environ.get("EDGECAST_CACHE", Path.home() / ".cache" / "edgecast"))


def content_key(paths: Iterable[Path], *extra: str) -> str:
    """sha256 over the files under ``paths`` (names relative to the checkout, and contents)."""
    digest = hashlib.sha256()
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts:
                continue
            digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    for value in extra:
        digest.update(value.encode() + b"\0")
    return digest.hexdigest()[:24]


def cached_dir(kind: str, key: str, make: Callable[[Path], None]) -> Path:
    """The folder ``<cache>/<kind>/<key>``, made once by ``make(folder)`` under a lock.

    ``make`` fills a temporary folder that is renamed into place only when it returns, so an
    interrupted run leaves nothing that a later one would take for a result.
    """
    parent = cache_root() / kind
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / key
    with open(parent / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_dir():
            staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=parent))
            try:
                make(staging)
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target
