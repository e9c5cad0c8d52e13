"""Champion and challenger: the decision rule, the manifest's refusal and the champion record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecast.promotion import (
    CHAMPIONS_FILE,
    PromotionError,
    champion_of,
    check_not_refused,
    decide,
    set_champion,
)


def test_a_candidate_must_beat_the_champion_by_the_margin() -> None:
    won = decide(9.7, 10.0, 0.02, None)
    assert won.promoted and "beats the champion" in won.reason and "-3.0%" in won.reason
    close = decide(9.9, 10.0, 0.02, None)
    assert not close.promoted
    assert "at most 9.800 (2% lower)" in close.reason
    assert decide(9.8, 10.0, 0.02, None).promoted  # exactly at the bar
    assert decide(10.0, 10.0, 0.0, None).promoted  # no margin: a tie is enough


def test_the_naive_floor_comes_first_and_a_first_model_needs_only_the_checks() -> None:
    below = decide(5.0, 10.0, 0.02, "1.100x naive's")
    assert not below.promoted and below.reason == "below the naive floor: 1.100x naive's"
    first = decide(5.0, None, 0.02, None)
    assert first.promoted and first.reason.startswith("first champion")


def test_old_and_promoted_bundles_pass_and_a_refused_one_never_does(golden_bundle: Path) -> None:
    old = json.loads((golden_bundle / "manifest.json").read_text())
    assert "promotion" not in old
    check_not_refused(old)
    check_not_refused(old | {"promotion": {"decision": "promoted"}})
    refused = old | {
        "promotion": {
            "decision": "refused",
            "reason": "does not beat the champion by the margin",
            "champion_id": "sbn-b13-champion",
        }
    }
    with pytest.raises(PromotionError, match=r"lost to the champion 'sbn-b13-champion'.*never"):
        check_not_refused(refused)


@pytest.mark.parametrize("section", ["refused", {}, {"decision": "maybe"}])
def test_a_promotion_section_without_a_decision_is_refused(section: object) -> None:
    with pytest.raises(PromotionError, match="records no decision"):
        check_not_refused({"model_id": "sbn-b1", "promotion": section})


def test_the_champion_record_is_one_file_per_store_rewritten_whole(tmp_path: Path) -> None:
    assert champion_of(tmp_path, "b13") is None
    assert set_champion(tmp_path, "b13", "sbn-b13-one", by="promote") is None
    assert set_champion(tmp_path, "b4", "sbn-b4-one", by="promote") is None
    assert set_champion(tmp_path, "b13", "sbn-b13-two", by="retrain") == "sbn-b13-one"
    assert champion_of(tmp_path, "b13") == "sbn-b13-two"
    assert champion_of(tmp_path, "b4") == "sbn-b4-one"
    record = json.loads((tmp_path / CHAMPIONS_FILE).read_text())
    assert record["champions"]["b13"]["by"] == "retrain"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".champions.lock", CHAMPIONS_FILE]


@pytest.mark.parametrize(
    "content", ["{", "[]", '{"format_version": 1, "champions": {"b13": {"model_id": "../x"}}}']
)
def test_an_unreadable_champion_record_is_an_error_never_no_champion(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / CHAMPIONS_FILE).write_text(content)
    with pytest.raises(PromotionError, match=CHAMPIONS_FILE):
        champion_of(tmp_path, "b13")
