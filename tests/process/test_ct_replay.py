"""The continuous-training replay (bench/ct_replay.py), short: 26 real days of b13 from
2016-07-01 replayed through ``edgecast ingest`` and through a fleet of real predictors (a canary,
one more node, and a control node that keeps the first champion), with weekly cycles (retrain,
canary judged on live traffic, the fleet) and a step change of the readings: from STEP_DAY on,
every replayed reading is 1.5 times the real one. docs/ct-replay.md has the year-long run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgecast.data import load_building
from edgecast_harness.paths import DATA, REPO

START, END = "2016-07-01", "2016-07-27"
STEP_DAY, STEP_FACTOR = "2016-07-08", 1.5  # b13 uses half as much again from this day on
DRIFT_WINDOW_HOURS = 168  # the drift rule's 7-day window: the step must be caught within it


@dataclass
class Run:
    figures: dict[str, Any]
    answers: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    work: Path
    stdout: str

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.figures["events"] if e["kind"] == kind]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("ct-replay")
    out, work = root / "out", root / "work"
    result = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "ct_replay.py"), "--building", "b13",
            "--start", START, "--end", END, "--step-day", STEP_DAY,
            "--step-factor", str(STEP_FACTOR), "--worse-candidate-cycle", "1",
            "--bad-canary-cycle", "0", "--out", str(out), "--work", str(work),
        ],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]

    def lines(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (out / name).read_text().splitlines()]

    return Run(
        json.loads((out / "replay.json").read_text()),
        lines("answers.jsonl"),
        lines("checkpoints.jsonl"),
        work,
        result.stdout,
    )


def replayed_loads() -> pd.Series:
    """The readings the replay sent, by epoch hour: the shipped ones, scaled from STEP_DAY."""
    loads = load_building("b13", DATA, weather_station=None)["load"]
    loads = loads.where(loads.index < pd.Timestamp(STEP_DAY, tz="UTC"), loads * STEP_FACTOR)
    hours = [int(moment.timestamp()) // 3600 for moment in loads.index]
    return pd.Series(loads.to_numpy(), index=hours)


def test_live_mae_is_the_mae_of_the_forecasts_the_clients_got(run):
    actual = replayed_loads()
    compared = 0
    for point in run.checkpoints:
        model_id, clock = point["serving"], point["hour"]
        answers = [a for a in run.answers if a["node"] == point["node"]]
        recent = [a for a in answers if clock - 168 - 24 < a["hour"] <= clock]
        # Hours where this model also forecast in shadow (forecasts no client saw) are left out.
        if any(a["shadow"] in (model_id, "?") for a in recent):
            continue
        issued = {a["hour"]: a["forecast"] for a in recent if a.get("model_id") == model_id}
        for window, hours in (("24h", 24), ("7d", 168)):
            errors = [
                issued[hour - lead][lead - 1] - actual[hour]
                for hour in range(clock - hours + 1, clock + 1)
                for lead in range(1, 25)
                if hour - lead in issued
            ]
            live = point["models"][model_id][window]
            assert live["pairs"] == len(errors)
            if errors:
                assert live["mae"] == pytest.approx(np.mean(np.abs(errors)), abs=1e-9, rel=0)
                compared += 1
    assert compared >= 60, compared
    assert run.figures["live_mae_check"]["mismatches"] == 0
    assert run.figures["live_mae_check"]["max_abs_diff"] <= 1e-9


def test_a_promoted_candidate_is_served_with_no_failed_request(run):
    figures = run.figures
    assert figures["failed_requests"] == 0, figures["failed_examples"]
    assert all(a["status"] == 200 for a in run.answers)
    assert figures["promotions"] >= 1 and figures["fleet_rollouts"] >= 1
    served = run.events("fleet")[0]["model_id"]
    for node in figures["nodes"]:
        assert any(a["node"] == node and a["model_id"] == served for a in run.answers)
    # Requests kept coming while the predictors swapped models, and every one was answered.
    assert figures["requests_during_admin_calls"] > 0


def test_a_worse_candidate_is_refused_and_never_leaves_the_cloud(run):
    (refused,) = run.events("worse candidate refused")
    worse = refused["model_id"]
    assert "REFUSED" in refused["line"]
    assert (run.work / "cloud" / "models" / "refused" / worse / "manifest.json").is_file()
    for node in [*run.figures["nodes"], "control"]:
        assert not (run.work / node / "models" / worse).exists()
    (champion,) = run.events("start")
    step = run.figures["cycle_records"][0]["steps"][0]
    assert step["step"] == "worse candidate"
    assert set(step["serving_after"].values()) == {champion["model_id"]}
    assert not any(a.get("model_id") == worse for a in run.answers)


def test_the_step_change_fires_the_drift_trigger_within_the_window(run):
    drift = run.figures["drift"]
    assert drift["step_in_replay"] and not drift["drifting_at_step"]
    assert drift["detection_delay_hours"] is not None
    assert drift["detection_delay_hours"] <= DRIFT_WINDOW_HOURS
    step = pd.Timestamp(STEP_DAY, tz="UTC")
    fired = [e for e in run.events("drift") if pd.Timestamp(e["time"], tz="UTC") >= step]
    assert any("drifted, live MAE" in line for line in fired[0]["lines"])


def test_live_mae_recovers_once_a_retrained_model_serves(run):
    recovery = run.figures["recovery"]
    assert recovery["judged"]
    # The fleet's live MAE, as a fraction of the (new) load, comes back within the drift factor
    # of the one before the step once a model promoted after the drift fired serves it...
    assert recovery["worst_after_step"]["relative"] > recovery["bound_relative"]
    assert recovery["recovered"] is not None, recovery
    assert recovery["end_model_retrained_after_drift"]
    # ... and at the end it is better than the first champion's, never retrained, on the same
    # requests (the control node).
    assert recovery["end"]["relative"] < recovery["control_end"]["relative"]
