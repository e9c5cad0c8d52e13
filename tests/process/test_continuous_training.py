"""``ansible-playbook continuous-training.yml`` on the embedded default, with real processes and
real data: b13's first half of 2016 trains a champion that the local predictor serves (shadow
scoring on, as local_runtime starts it); five new weeks are ingested by the cycle, which
retrains, promotes the candidate by champion/challenger, hot swaps it in on the canary and
judges it on live traffic (real hourly windows replayed by a client) against the champion scored
in shadow on the same requests. A deliberately bad bundle given to the cycle is rolled back on
the canary, and the run fails with the reason.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from edgecast.data import load_building
from edgecast_harness.paths import DATA
from edgecast_harness.playbook import run_playbook
from edgecast_harness.ports import free_port
from edgecast_harness.predictor import edgecast

SHIPPED = (DATA / "electricity" / "b13" / "2016.csv").read_text().splitlines(keepends=True)
HEADER, ROWS = SHIPPED[0], SHIPPED[1:]
FIRST_DAYS, NEW_DAYS = 182, 35  # to 2016-07-01, then to 2016-08-05
# The candidate's held-out weeks, hour by hour: the live comparison covers the same two weeks
# as champion/challenger's (there the candidate won; on two days alone, it may not).
REPLAY_FROM = pd.Timestamp("2016-07-22 00:00", tz="UTC")
REPLAY_HOURS = 14 * 24
WINDOW = 600


class Replay:
    """A client that, once the predictor serves a model other than ``before``, sends real
    consecutive hourly windows of b13, about twenty a second, and records every answer."""

    def __init__(self, port: int, before: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.before = before
        self.answers: list[tuple[int, str]] = []
        frame = load_building("b13", DATA, weather_station=None)["load"]
        self.bodies = []
        for step in range(REPLAY_HOURS):
            loads = frame.loc[: REPLAY_FROM + pd.Timedelta(hours=step)].iloc[-WINDOW:]
            stamp = loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
            self.bodies.append({"loads": [float(v) for v in loads], "last_timestamp": stamp})
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as session:
            while not self.stop.is_set():
                model = session.get(f"{self.url}/v1/model", timeout=10).json()
                if model["model_id"] != self.before:
                    break
                time.sleep(0.05)
            for body in self.bodies:
                if self.stop.is_set():
                    return
                answer = session.post(f"{self.url}/v1/predict", json=body, timeout=10)
                self.answers.append((answer.status_code, answer.json().get("model_id", "")))
                time.sleep(0.04)

    def __enter__(self) -> Replay:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], Path, int, str]]:
    """A data folder of b13's first half of 2016, a champion trained on it and promoted, served
    by the embedded default's local_runtime on the LiteRT runtime."""
    root = tmp_path_factory.mktemp("ct")
    data = root / "data"
    shutil.copytree(DATA / "weather", data / "weather")
    (data / "electricity" / "b13").mkdir(parents=True)
    (data / "electricity" / "b13" / "2016.csv").write_text(
        HEADER + "".join(ROWS[: 24 * FIRST_DAYS])
    )
    var = root / "var"
    store = var / "models"
    # A champion worth beating: six epochs (better than seasonal naive, or promote refuses it).
    edgecast(
        "train", "--building", "b13", "--data-dir", str(data), "--until", "2016-07-01",
        "--epochs", "6", "--out", str(store), "--quiet",
    )  # fmt: skip
    (champion,) = (p.name for p in store.iterdir())
    edgecast("promote", champion, "--store", str(store))
    port = free_port()
    extra = [
        "-e", f"edgecast_var={var}", "-e", f"local_runtime_port={port}",
        "-e", "local_runtime_runtime=litert", "-e", f"model_training_data_dir={data}",
        "-e", "ct_analysis_seconds=25", "-e", "ct_min_hours=24", "-e", "ct_status_interval=1",
    ]  # fmt: skip
    run_playbook("playbooks/serve-local.yml", *extra)
    new = root / "new.csv"
    new.write_text(HEADER + "".join(ROWS[24 * FIRST_DAYS : 24 * (FIRST_DAYS + NEW_DAYS)]))
    try:
        yield extra, new, port, champion
    finally:
        edgecast("service", "stop", "--pid-file", str(var / "run/predictor.pid"), check=False)


def serving(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/v1/model", timeout=10).json()


def test_a_cycle_ingests_retrains_and_promotes_a_better_model_on_live_evidence(edge):
    extra, new, port, champion = edge
    assert serving(port)["model_id"] == champion
    with Replay(port, champion) as replay:
        result = run_playbook(
            "continuous-training.yml", *extra, "-e", f"ct_ingest_file={new}",
            "-e", '{"ct_retrain_args": "--epochs 8 --margin 0"}', check=False,
        )  # fmt: skip
    assert result.rc == 0, result.tail(6000)
    model = serving(port)
    candidate = model["model_id"]
    assert candidate != champion
    assert "b13: 840 rows read, 840 new hours" in result.stdout
    assert f"(warm start from {champion})" in result.stdout
    assert "localhost: live MAE" in result.stdout and "promoted to the fleet" in result.stdout
    assert replay.answers and all(status == 200 for status, _ in replay.answers)
    assert {model_id for _, model_id in replay.answers} == {candidate}
    same = model["shadow"]["same_hours"]
    assert model["shadow"]["model_id"] == champion
    assert same["serving"]["hours"] >= 24
    assert same["serving"]["mae"] <= same["shadow"]["mae"]


def test_a_canary_worse_on_live_traffic_is_rolled_back(edge, tmp_path):
    extra, _, port, _ = edge
    before = serving(port)["model_id"]
    # Passes every bundle check, parity included, and forecasts badly: one epoch from a random
    # draw.
    bad_store = tmp_path / "bad"
    edgecast(
        "train", "--building", "b13", "--data-dir", str(DATA), "--until", "2016-07-01",
        "--epochs", "1", "--out", str(bad_store), "--quiet",
    )  # fmt: skip
    (bad,) = bad_store.iterdir()
    with Replay(port, before) as replay:
        result = run_playbook(
            "continuous-training.yml", *extra, "-e", f"ct_candidate={bad}",
            "-e", "rollout_allow_worse_than_naive=true", check=False,
        )  # fmt: skip
    assert result.rc != 0
    assert f"The canaries refused {bad.name} and were rolled back" in result.stdout
    assert "is worse than the previous model's" in result.stdout
    assert serving(port)["model_id"] == before
    assert replay.answers and all(status == 200 for status, _ in replay.answers)


def test_a_drift_triggered_cycle_retrains_only_when_the_fleet_drifted(edge):
    extra, _, port, _ = edge
    before = serving(port)
    live = before["live_accuracy"]["models"][before["model_id"]]["7d"]
    held_out = before["manifest"]["metrics"]["sbn"]["mae"]
    assert live["hours"] >= 24  # the earlier cycles' replayed hours
    ratio = live["mae"] / held_out
    store = Path(extra[1].split("=", 1)[1]) / "models"

    def stored() -> list[str]:
        return sorted(p.parent.name for p in store.rglob("manifest.json"))

    bundles = stored()
    # The factors are set around the node's real ratio, on either side of it.
    calm = run_playbook(
        "continuous-training.yml", *extra, "-e", "ct_trigger=drift",
        "-e", f"ct_drift_factor={ratio * 1.5}",
    )  # fmt: skip
    assert f"localhost: no drift, live MAE {live['mae']:.3f} kWh" in calm.stdout
    assert "no drift: nothing retrained this cycle" in calm.stdout
    assert stored() == bundles  # nothing trained
    drifted = run_playbook(
        "continuous-training.yml", *extra, "-e", "ct_trigger=drift",
        "-e", f"ct_drift_factor={ratio / 1.5}",
        "-e", '{"ct_retrain_args": "--cold --epochs 1 --margin 50%"}',
    )  # fmt: skip
    assert f"localhost: drifted, live MAE {live['mae']:.3f} kWh" in drifted.stdout
    assert "(cold start) REFUSED" in drifted.stdout, drifted.stdout[-5000:]
    assert serving(port)["model_id"] == before["model_id"]  # a refused candidate stays home
    bad = run_playbook("continuous-training.yml", *extra, "-e", "ct_trigger=hourly", check=False)
    assert bad.rc != 0 and "ct_trigger is always (retrain every cycle) or drift" in bad.stdout
