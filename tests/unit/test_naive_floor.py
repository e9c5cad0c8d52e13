"""The naive floor: what rollout-model.yml holds a bundle's held-out accuracy to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecast.floor import FloorError, check_floor, ratio_to_naive


def manifest(sbn_mae: float, naive_mae: float, *, floor: bool = True) -> dict[str, object]:
    metrics = {"sbn": {"mae": sbn_mae}, "seasonal_naive": {"mae": naive_mae}}
    made = {"model_id": "sbn-b1-0001", "metrics": metrics}
    if floor:
        made["floor"] = {"metric": "mae", "ratio_to_seasonal_naive": sbn_mae / naive_mae}
    return made


def test_a_model_better_than_naive_passes_silently():
    assert check_floor(manifest(8.0, 10.0), enforce=True) is None


def test_a_model_worse_than_naive_is_refused_with_the_override_named():
    with pytest.raises(FloorError, match=r"1\.200x naive's.*rollout_allow_worse_than_naive=true"):
        check_floor(manifest(12.0, 10.0), enforce=True)


def test_the_override_ships_it_with_a_warning():
    warning = check_floor(manifest(12.0, 10.0), enforce=False)
    assert warning is not None and "worse than seasonal naive" in warning and "1.200x" in warning


def test_a_bundle_made_before_the_floor_field_is_judged_by_its_held_out_metrics(
    golden_bundle: Path,
):
    assert ratio_to_naive(manifest(12.0, 10.0, floor=False)) == pytest.approx(1.2)
    old = json.loads((golden_bundle / "manifest.json").read_text())
    assert "floor" not in old
    metrics = old["metrics"]
    assert ratio_to_naive(old) == metrics["sbn"]["mae"] / metrics["seasonal_naive"]["mae"]


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"floor": {"ratio_to_seasonal_naive": "low"}},
        {"floor": {"ratio_to_seasonal_naive": None}},
    ],
)
def test_a_manifest_without_a_ratio_is_refused_unless_the_floor_is_off(broken):
    with pytest.raises(FloorError, match="no finite ratio to seasonal naive"):
        check_floor(broken, enforce=True)
    assert "cannot be checked" in str(check_floor(broken, enforce=False))
