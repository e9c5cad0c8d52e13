"""The unit tier works on copies of the golden bundle (``golden_bundle``, tests/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def golden_copy(golden_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the golden bundle that a test may damage."""
    return Path(shutil.copytree(golden_bundle, tmp_path / "store" / golden_bundle.name))
