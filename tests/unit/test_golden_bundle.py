"""The unit tier's golden bundle still matches the bundle format this checkout writes."""

from __future__ import annotations

import json
from pathlib import Path

from edgecast.bundle import load_bundle_dir
from edgecast.bundle.layout import FORMAT_VERSION

REGENERATE = (
    "rm -r tests/unit/fixtures/bundles/* && edgecast train --building b13 --seed 0 --epochs 2 "
    "--out tests/unit/fixtures/bundles"
)


def test_the_golden_bundle_is_of_this_checkout_s_format(golden_bundle: Path) -> None:
    manifest = json.loads((golden_bundle / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION, f"make it again: {REGENERATE}"
    assert load_bundle_dir(golden_bundle).model_id == golden_bundle.name, REGENERATE
