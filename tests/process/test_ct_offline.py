"""Offline autonomy (issue 14 item 6) on three real predictors on this machine
(edgecast_harness.local_fleet): edge-1 the canary, edge-2 and edge-3 the rest of the fleet.

While edge-3 cannot be reached from the controller (its inventory entry is SSH to a closed port,
as a node behind a broken link; its predictor keeps running), a cycle promotes a model to the
nodes it reaches, names edge-3 as unreachable with what SSH said, and leaves it alone; edge-3
keeps answering with its last model and keeps scoring it on the live traffic it gets. Once it
can be reached again, the next cycle brings it the model that cycle promotes, as the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from edgecast.data import load_building
from edgecast_harness.local_fleet import LocalFleet, hourly_body, small_bundles, start_local_fleet
from edgecast_harness.paths import DATA
from edgecast_harness.playbook import PlaybookRun

NODES = ("edge-1", "edge-2", "edge-3")
JUDGE = (
    "-e", "rollout_allow_worse_than_naive=true", "-e", "ct_min_hours=1",
    "-e", "ct_mae_tolerance=100", "-e", "ct_analysis_seconds=10",
)  # fmt: skip
FRAME = load_building("b13", DATA, weather_station=None)["load"]


class HourlyClient:
    """Sends real consecutive hourly windows to a predictor, five a second, from ``start`` on,
    until stopped (once it serves ``wait_for``, when given); records each answer."""

    def __init__(self, url: str, start: str, series: str, wait_for: str | None = None) -> None:
        self.url, self.series, self.wait_for = url, series, wait_for
        self.hour = pd.Timestamp(start, tz="UTC")
        self.answers: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with requests.Session() as session:
            while self.wait_for and not self.stop.is_set():
                if session.get(f"{self.url}/v1/model", timeout=10).json()["model_id"] == (
                    self.wait_for
                ):
                    break
                time.sleep(0.1)
            while not self.stop.is_set():
                body = hourly_body(FRAME, self.hour, series=self.series)
                answer = session.post(f"{self.url}/v1/predict", json=body, timeout=10)
                self.answers.append((answer.status_code, answer.json().get("model_id", "")))
                self.hour += pd.Timedelta(hours=1)
                time.sleep(0.2)

    def __enter__(self) -> HourlyClient:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def bundles() -> list[Path]:
    """A (the fleet's model), B and C (candidates), newest last."""
    return small_bundles((0, 1, 2))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, bundles: list[Path]) -> Iterator[LocalFleet]:
    running = start_local_fleet(tmp_path_factory.mktemp("ct-offline"), NODES, bundles[0])
    try:
        yield running
    finally:
        running.stop()


def scored(fleet: LocalFleet, name: str, model_id: str) -> int:
    return fleet.model(name)["live_accuracy"]["models"][model_id]["pairs_scored"]


def summary(run: PlaybookRun) -> list[str]:
    (result,) = run.results("Summarise the cycle")
    return result["msg"]


def test_an_unreachable_node_keeps_serving_and_scoring_and_the_next_cycle_brings_it(fleet, bundles):
    a, b, c = (bundle.name for bundle in bundles)
    with HourlyClient(fleet.url("edge-3"), "2016-07-04 00:00", "offline") as offline:
        time.sleep(2)
        before = scored(fleet, "edge-3", a)
        fleet.offline = {"edge-3"}
        with HourlyClient(fleet.url("edge-1"), "2016-07-10 00:00", "live", wait_for=b):
            run = fleet.cycle("-e", f"ct_candidate={bundles[1]}", *JUDGE)
        after = scored(fleet, "edge-3", a)
    # Unreachable from its first task on (Ansible's exit code 4), the rest went on.
    assert run.rc == 4, run.tail()
    assert run.recap("edge-3")["dark"] == 1 and run.recap("edge-3")["ok"] == 0
    assert run.failed_hosts() == ["edge-3"], run.tail(6000)
    lines = summary(run)
    (line,) = (line for line in lines if line.startswith("edge-3: "))
    assert line.startswith(
        "edge-3: unreachable, left as it is (it keeps serving and scoring its model; the next "
        "promoted model reaches it): Failed to connect to the host via ssh: "
    )
    assert "Connection refused" in line
    assert lines[-1] == f"promoted to the fleet: {b}"
    assert fleet.serving() == {"edge-1": b, "edge-2": b, "edge-3": a}
    # Meanwhile edge-3 answered every request with its last model and scored it.
    assert len(offline.answers) > 20
    assert set(offline.answers) == {(200, a)}
    assert after > before > 0

    fleet.offline = set()
    with HourlyClient(fleet.url("edge-1"), "2016-07-20 00:00", "live", wait_for=c):
        run = fleet.cycle("-e", f"ct_candidate={bundles[2]}", *JUDGE)
    assert run.rc == 0, run.tail()
    assert not [line for line in summary(run) if "unreachable" in line]
    assert summary(run)[-1] == f"promoted to the fleet: {c}"
    assert fleet.serving() == dict.fromkeys(NODES, c)


def test_a_cycle_that_reaches_no_canary_stops_before_changing_anything(fleet, bundles):
    before = fleet.serving()
    fleet.offline = set(NODES)
    try:
        run = fleet.cycle("-e", f"ct_candidate={bundles[1]}", *JUDGE)
    finally:
        fleet.offline = set()
    assert run.rc != 0
    (failed,) = (
        event["event_data"]["res"]["msg"]
        for event in run.events
        if event.get("event") == "runner_on_failed"
        and event["event_data"].get("task")
        == "Stop before changing anything when no canary can be reached"
    )
    assert failed.startswith(
        f"No canary can be reached (edge-1, edge-2, edge-3 unreachable), so {bundles[1].name} "
        "was rolled out nowhere; nothing was changed."
    )
    assert "edge-1: Failed to connect to the host via ssh" in failed
    assert fleet.serving() == before
