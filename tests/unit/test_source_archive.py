"""scripts/source_archive.py: the package source as one reproducible archive, and the digest a
node computes of its unpacked tree (predictor_image unpacks only where that digest differs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from edgecast_harness.paths import REPO

SCRIPT = REPO / "scripts" / "source_archive.py"
NODE_DIGEST = "find ./app -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum"


def pack(source: Path, archive: Path) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(source), str(archive)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def node_digest(folder: Path) -> str:
    command = ["bash", "-c", f"set -o pipefail; {NODE_DIGEST}"]
    out = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[0]


def source_copy(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    shutil.copytree(REPO / "app" / "edgecast", source / "edgecast")
    shutil.copy2(REPO / "app" / "pyproject.toml", source / "pyproject.toml")
    (source / "edgecast" / "__pycache__").mkdir(exist_ok=True)
    (source / "edgecast" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (source / "edgecast" / ".hidden").write_text("not shipped")
    return source


def test_the_unpacked_tree_digest_is_the_one_the_node_computes(tmp_path: Path) -> None:
    source = source_copy(tmp_path)
    digests = pack(source, tmp_path / "a.tar.gz")
    node = tmp_path / "node"
    node.mkdir()
    with tarfile.open(tmp_path / "a.tar.gz") as archive:
        names = archive.getnames()
        archive.extractall(node, filter="data")
    assert "app/pyproject.toml" in names and "app/edgecast/cli/__init__.py" in names
    assert not [n for n in names if "__pycache__" in n or "/." in n]
    assert node_digest(node) == digests["tree_sha256"]

    # A stray or edited file on the node changes its digest: the role unpacks again.
    (node / "app" / "edgecast" / "stray.py").write_text("")
    assert node_digest(node) != digests["tree_sha256"]


def test_the_same_source_gives_the_same_bytes_and_a_change_new_ones(tmp_path: Path) -> None:
    source = source_copy(tmp_path)
    first = pack(source, tmp_path / "a.tar.gz")
    again = pack(source, tmp_path / "b.tar.gz")
    assert first == again
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with (source / "edgecast" / "store.py").open("a") as module:
        module.write("# changed\n")
    changed = pack(source, tmp_path / "a.tar.gz")
    assert changed["archive_sha256"] != first["archive_sha256"]
    assert changed["tree_sha256"] != first["tree_sha256"]
