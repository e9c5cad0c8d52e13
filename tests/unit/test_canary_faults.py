"""The canary verdict when a canary misbehaves or is missing (edgecast.canary.judge_canaries)."""

from __future__ import annotations

from edgecast.canary import CanaryRules, judge, judge_canaries

NEW, OLD = "sbn-b13-new", "sbn-b13-old"
RULES = CanaryRules(min_hours=24, mae_tolerance=0.0, p99_ms=50)
GOOD = {
    "node": "edge-1",
    "model_id": NEW,
    "ready": True,
    "shadow_model_id": OLD,
    "shadow_hours": 48,
    "same_hours_mae": 4.0,
    "shadow_same_hours_mae": 4.2,
    "requests": 500,
    "errors_5xx": 0,
    "p99_ms": 3.0,
    "error": None,
}


def test_a_predictor_that_restarted_in_the_window_fails_whatever_its_figures():
    # node_status gives no request figures when the counters went back: a restart.
    restarted = {**GOOD, "requests": None, "errors_5xx": None, "p99_ms": None}
    verdict = judge(restarted, NEW, OLD, RULES)
    assert not verdict.passed
    assert verdict.reason.startswith("its predictor restarted during the analysis window")
    assert f"it serves {NEW}" in verdict.reason


def test_5xx_answers_are_counted_against_the_requests_of_the_window():
    verdict = judge({**GOOD, "errors_5xx": 7}, NEW, OLD, RULES)
    assert not verdict.passed
    assert verdict.reason == (
        "7 requests failed with a 5xx in the analysis window (of 500 prediction requests)"
    )


def test_every_canary_gets_a_verdict_by_its_inventory_name():
    rows = {"edge-1": GOOD, "edge-2": {**GOOD, "node": "k3s-node-2"}}
    verdicts = judge_canaries(["edge-1", "edge-2", "edge-3"], rows, NEW, OLD, RULES)
    assert [(v.node, v.passed) for v in verdicts] == [
        ("edge-1", True),
        ("edge-2", True),
        ("edge-3", False),
    ]
    assert verdicts[2].reason == (
        "it left the run before it could be judged (unreachable, or a task failed on it)"
    )


def test_a_canary_whose_predictor_stopped_answering_fails_with_what_was_seen():
    unread = {"node": "edge-1", "error": "not read: GET http://127.0.0.1:1/v1/model: refused"}
    (verdict,) = judge_canaries(["edge-1"], {"edge-1": unread}, NEW, OLD, RULES)
    assert not verdict.passed
    assert verdict.reason == f"its predictor could not be read: {unread['error']}"
