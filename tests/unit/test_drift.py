"""Drift (edgecast.drift): live accuracy against the serving model's held-out accuracy."""

from __future__ import annotations

import pytest

from edgecast.drift import check

ROW = {"node": "edge-1", "live_mae_7d": 5.0, "validation_mae": 4.0, "live_hours_7d": 48}


def test_a_node_above_the_factor_has_drifted():
    report = check([ROW], factor=1.2)
    assert report.drifted
    assert report.lines == [
        "edge-1: drifted, live MAE 5.000 kWh over 48 hours is 1.25x the held-out 4.000 "
        "(more than 1.2x)"
    ]


def test_at_or_below_the_factor_is_no_drift():
    assert not check([ROW], factor=1.25).drifted
    assert "no drift" in check([ROW], factor=1.3).lines[0]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"live_hours_7d": 23}, "edge-1: not judged, 23 live hours scored (at least 24 needed)"),
        ({"live_mae_7d": None}, "edge-1: not judged, 48 live hours"),
        ({"validation_mae": None}, "edge-1: not judged, 48 live hours"),
        ({"error": "not read: refused"}, "edge-1: not judged, its predictor could not be read"),
    ],
)
def test_a_node_that_cannot_be_judged_does_not_fire(change, line):
    report = check([{**ROW, **change}], factor=1.0)
    assert not report.drifted
    assert report.lines[0].startswith(line)


def test_one_drifted_node_is_enough():
    calm = {**ROW, "node": "edge-2", "live_mae_7d": 4.0}
    report = check([calm, ROW], factor=1.2)
    assert report.drifted and len(report.lines) == 2


def test_rules_that_judge_nothing_are_refused():
    with pytest.raises(ValueError, match="factor > 0"):
        check([ROW], factor=0)
    with pytest.raises(ValueError, match="min_hours >= 1"):
        check([ROW], min_hours=0)
