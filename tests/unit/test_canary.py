"""The canary verdict (edgecast.canary): a model goes beyond its canaries only on evidence."""

from __future__ import annotations

import pytest

from edgecast.canary import CanaryRules, judge

NEW, OLD = "sbn-b13-new", "sbn-b13-old"
RULES = CanaryRules(min_hours=24, mae_tolerance=0.05, p99_ms=50)
GOOD = {
    "node": "edge-1",
    "model_id": NEW,
    "ready": True,
    "shadow_model_id": OLD,
    "shadow_hours": 48,
    "same_hours_mae": 4.0,
    "shadow_same_hours_mae": 4.2,
    "errors_5xx": 0,
    "p99_ms": 3.0,
    "error": None,
}


def test_a_canary_no_worse_on_the_same_hours_passes():
    verdict = judge(GOOD, NEW, OLD, RULES)
    assert verdict.passed, verdict
    assert (verdict.new_mae, verdict.old_mae, verdict.hours) == (4.0, 4.2, 48)
    assert "live MAE 4.000 kWh against the previous model's 4.200 kWh on the same 48" in (
        verdict.reason
    )


def test_within_the_tolerance_passes_and_beyond_it_fails():
    assert judge({**GOOD, "same_hours_mae": 4.2 * 1.05}, NEW, OLD, RULES).passed
    verdict = judge({**GOOD, "same_hours_mae": 4.2 * 1.06}, NEW, OLD, RULES)
    assert not verdict.passed and "is worse than the previous model's" in verdict.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"error": "not read: connection refused"}, "could not be read: not read"),
        ({"model_id": OLD}, f"it serves {OLD} (ready: True), not {NEW}"),
        ({"ready": False}, "(ready: False)"),
        ({"shadow_model_id": None}, "needs shadow scoring on"),
        ({"shadow_hours": 23}, "only 23 hours scored by both models (at least 24 needed)"),
        ({"same_hours_mae": None}, "only 48 hours"),
        ({"errors_5xx": 2}, "2 requests failed with a 5xx"),
        ({"p99_ms": 51.0}, "p99 51.0 ms is above 50 ms"),
    ],
)
def test_what_cannot_be_judged_or_misbehaves_fails(change, reason):
    verdict = judge({**GOOD, **change}, NEW, OLD, RULES)
    assert not verdict.passed
    assert reason in verdict.reason


@pytest.mark.parametrize("rules", [{"min_hours": 0}, {"mae_tolerance": -0.1}, {"p99_ms": 0}])
def test_rules_that_judge_nothing_are_refused(rules):
    with pytest.raises(ValueError, match="min_hours >= 1"):
        CanaryRules(**rules)
