"""The unit tier's model: one real bundle, trained on the shipped data and kept in the checkout.

``fixtures/bundles/<model_id>`` was made by ``edgecast train --building b13 --seed 0 --epochs 2
--out tests/unit/fixtures/bundles``. It is loaded on the LiteRT runtime (no TensorFlow), so the
unit tier stays fast; ``test_golden_bundle.py`` fails with that command when the bundle format
moves on and the bundle must be made again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN_STORE = FIXTURES / "bundles"


@pytest.fixture(scope="session")
def golden_bundle() -> Path:
    (bundle,) = sorted(p for p in GOLDEN_STORE.iterdir() if p.is_dir())
    return bundle


@pytest.fixture
def golden_copy(golden_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the golden bundle that a test may damage."""
    return Path(shutil.copytree(golden_bundle, tmp_path / "store" / golden_bundle.name))
