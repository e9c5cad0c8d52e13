"""Writes the edgecast package source as a reproducible tar.gz and prints two digests.

    python scripts/source_archive.py SOURCE_DIR ARCHIVE

SOURCE_DIR holds pyproject.toml and the edgecast/ package. Only what a build needs goes in (no
caches, compiled files, hidden files or folders), names sorted, times, owners and modes fixed,
so the same source gives the same bytes: Ansible's copy then moves it only when the code
changed. Prints JSON: the archive's sha256, and the digest of the unpacked tree as
``find ./app -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum`` prints it
in the folder it is unpacked in, so a node can tell whether its copy still matches. The roles
model_training and predictor_image both send the source this way. Runs on the controller with
its own Python, standard library only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from pathlib import Path

SKIP = re.compile(r"(^|/)(__pycache__|\.[^/]*)(/|$)|\.py[co]$")


def members(source: Path) -> list[Path]:
    found = [source / "pyproject.toml"]
    for path in sorted((source / "edgecast").rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_file() and not SKIP.search(relative):
            found.append(path)
    return found


def archive_bytes(source: Path) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in members(source):
            data = path.read_bytes()
            info = tarfile.TarInfo(f"app/{path.relative_to(source).as_posix()}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def tree_digest(source: Path) -> str:
    """What sha256sum over the sorted ``./app/...`` paths of the unpacked archive gives."""
    named = sorted(
        (f"./app/{path.relative_to(source).as_posix()}".encode(), path) for path in members(source)
    )
    listing = b"".join(
        hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"  " + name + b"\n"
        for name, path in named
    )
    return hashlib.sha256(listing).hexdigest()


def main(argv: list[str]) -> int:
    source, archive = Path(argv[1]), Path(argv[2])
    data = archive_bytes(source)
    if not archive.exists() or archive.read_bytes() != data:
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(data)
    archive_sha256 = hashlib.sha256(data).hexdigest()
    print(json.dumps({"archive_sha256": archive_sha256, "tree_sha256": tree_digest(source)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
