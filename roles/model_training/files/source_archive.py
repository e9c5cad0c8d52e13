"""Writes the edgecast package source as a reproducible tar.gz and prints its sha256.

    python source_archive.py SOURCE_DIR ARCHIVE

SOURCE_DIR holds pyproject.toml and the edgecast/ package. Only what a build needs goes in (no
caches, compiled files, hidden files or folders), names sorted, times, owners and modes fixed,
so the same source gives the same bytes: Ansible's copy then moves it only when the code
changed. Runs on the controller with its own Python, standard library only.
"""

from __future__ import annotations

import gzip
import hashlib
import io
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


def main(argv: list[str]) -> int:
    source, archive = Path(argv[1]), Path(argv[2])
    data = archive_bytes(source)
    if not archive.exists() or archive.read_bytes() != data:
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(data)
    print(hashlib.sha256(data).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
