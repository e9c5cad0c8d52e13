"""Bad input to ``continuous-training.yml``, on a fleet of two real predictors on this machine
(edgecast_harness.local_fleet: edge-1 the canary, edge-2 the rest of the fleet), each case
ending in a clear line and nothing changed where it must not:

* a malformed ingest file: the cycle stops at ingest, the data folder and the store as before;
* a store without a champion: bundles but no record of which serves, or no bundle at all (the
  first model, refused here by the naive floor);
* a canary whose predictor stops answering during the analysis window (killed): judged failed
  with what was seen, the candidate taken out of its store so that the predictor started again
  serves the model before, the rest of the fleet unchanged;
* a canary that answers 5xx during the window, through a fake standing in for a broken
  predictor in front of the real one (the real predictor answers no 5xx to any request): rolled
  back, with the count;
* a client whose clock jumps back two days, then ahead three: the canary is judged on the hours
  both models forecast, each once, with the latest actuals, and the hours never forecast in
  the gap are not counted; the live figures are those worked out here from the answers.
"""

from __future__ import annotations

import http.server
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests

from edgecast.data import load_building
from edgecast_harness.local_fleet import (
    HEADER,
    ROWS,
    LocalFleet,
    hourly_body,
    small_bundles,
    start_local_fleet,
)
from edgecast_harness.paths import DATA
from edgecast_harness.playbook import PlaybookRun
from edgecast_harness.ports import free_port

NODES = ("edge-1", "edge-2")
FAIL = "Fail the cycle when a canary failed"
RETRAIN = "Retrain, and promote the candidate only when it beats the champion"
JUDGE = ("-e", "rollout_allow_worse_than_naive=true", "-e", "ct_min_hours=1")


@pytest.fixture(scope="module")
def bundles() -> list[Path]:
    """A (the fleet's model), B and C (candidates), newest last."""
    return small_bundles((0, 1, 2))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, bundles: list[Path]) -> Iterator[LocalFleet]:
    running = start_local_fleet(tmp_path_factory.mktemp("ct-faults"), NODES, bundles[0])
    try:
        yield running
    finally:
        running.stop()


def summary(run: PlaybookRun) -> str:
    """The cycle's summary lines, one a line."""
    (result,) = run.results("Summarise the cycle")
    return "\n".join(result["msg"])


def failure(run: PlaybookRun, task: str) -> str:
    """What the failed task ``task`` said: its command's stderr, or its message."""
    (result,) = (
        event["event_data"]["res"]
        for event in run.events
        if event.get("event") == "runner_on_failed" and event["event_data"].get("task") == task
    )
    return result.get("stderr") or result["msg"]


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_malformed_ingest_file_stops_the_cycle_and_changes_nothing(fleet, bundles, tmp_path):
    shutil.copytree(bundles[0], fleet.cloud_store / bundles[0].name)
    data_file = fleet.data / "electricity" / "b13" / "2016.csv"
    before = (data_file.read_bytes(), listing(fleet.cloud_store), fleet.serving())
    malformed = tmp_path / "new.csv"
    malformed.write_text(HEADER + "".join(ROWS[24 * 182 : 24 * 189]) + "2016-07-08 00:30:00,9\n")
    run = fleet.cycle("-e", f"ct_ingest_file={malformed}")
    assert run.rc != 0
    assert failure(run, "Ingest the new readings") == (
        f"edgecast ingest: refused, nothing written: {malformed}: line 170: 2016-07-08 00:30:00 "
        "is not on the hour (hourly readings only)"
    )
    assert run.failed_hosts() == ["localhost"]
    assert not list(
        run.results("Retrain, and promote the candidate only when it beats the champion")
    )
    assert (data_file.read_bytes(), listing(fleet.cloud_store), fleet.serving()) == before


def test_a_store_without_a_champion_stops_the_cycle_or_refuses_a_first_model(
    fleet, bundles, tmp_path
):
    # Bundles, but no record of the champion: retrain asks which one serves.
    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(bundles[0], unrecorded / bundles[0].name)
    before = (listing(unrecorded), fleet.serving())
    run = fleet.cycle("-e", f"model_training_output_dir={unrecorded}")
    assert run.rc != 0
    assert (
        f"edgecast retrain: {unrecorded} holds bundles of b13 (newest {bundles[0].name}) but "
        "records no champion for it: say which one serves with `edgecast promote "
        f"{bundles[0].name} --store {unrecorded}`, then retrain"
    ) in failure(run, RETRAIN)
    assert (listing(unrecorded), fleet.serving()) == before
    # No bundle at all: the first model is judged on its own, here refused by the naive floor
    # (one epoch); it is kept aside and the cycle ends without touching the fleet.
    empty = tmp_path / "empty"
    run = fleet.cycle(
        "-e", f"model_training_output_dir={empty}", "-e", '{"ct_retrain_args": "--epochs 1"}'
    )
    assert run.rc == 0, run.tail()
    (shown,) = run.results("Show the decision")
    assert "(cold start) REFUSED" in shown["msg"] and "seasonal naive" in shown["msg"], shown
    assert [p.name for p in empty.iterdir() if not p.name.startswith(".")] == ["refused"]
    assert fleet.serving() == before[1]


def test_a_canary_whose_predictor_stops_answering_is_judged_failed_and_never_promoted(
    fleet, bundles
):
    previous, candidate = bundles[0].name, bundles[1].name
    assert fleet.serving() == dict.fromkeys(NODES, previous)
    killed = threading.Event()

    def kill_once_it_serves_the_candidate() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if fleet.model("edge-1")["model_id"] == candidate:
                    time.sleep(2)  # into the analysis window
                    fleet.kill("edge-1")
                    killed.set()
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)

    killer = threading.Thread(target=kill_once_it_serves_the_candidate, daemon=True)
    killer.start()
    run = fleet.cycle("-e", f"ct_candidate={bundles[1]}", "-e", "ct_analysis_seconds=8", *JUDGE)
    killer.join(timeout=10)
    assert killed.is_set(), run.tail()
    assert run.rc != 0
    url = fleet.url("edge-1")
    lines = summary(run)
    assert f"edge-1: its predictor could not be read: not read: GET {url}/v1/model" in lines
    assert "edge-1: could not be switched back (" in lines
    assert (
        "the candidate was taken out of its store, so a predictor started again serves the "
        "model before"
    ) in lines
    assert lines.endswith(
        "refused on the canaries, not all of them switched back; the rest of the fleet keeps its "
        "model"
    )
    assert failure(run, FAIL).startswith(
        f"The canaries refused {candidate}, and edge-1 could not be switched back: edge-1: FAILED: "
        "its predictor could not be read"
    )
    assert fleet.model("edge-2")["model_id"] == previous  # the rest of the fleet, untouched
    assert not (fleet.store("edge-1") / candidate).exists()
    fleet.serve("edge-1")  # the node's service starts it again
    assert fleet.serving() == dict.fromkeys(NODES, previous)


class BrokenPredictorFake(http.server.ThreadingHTTPServer):
    """A fake standing in for a predictor that answers 5xx: in front of the real predictor, it
    answers every third ``POST /v1/predict`` with a 500 of its own (the real predictor answers
    none) and counts them in the ``/metrics`` it passes on, as the predictor counts its own;
    everything else goes to the real predictor and back unchanged."""

    def __init__(self, real: str) -> None:
        self.real, self.predicts, self.failed = real, 0, 0
        super().__init__(("127.0.0.1", free_port()), FakeHandler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> BrokenPredictorFake:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    server: BrokenPredictorFake
    FAILED_LINE = 'edgecast_requests_total{endpoint="/v1/predict",status="500"}'

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, body = self.forward(None)
        if self.path == "/metrics":
            lines = [line for line in body.decode().splitlines() if line]
            lines = [line for line in lines if not line.startswith(self.FAILED_LINE)]
            at = max(
                i for i, line in enumerate(lines) if line.startswith("edgecast_requests_total")
            )
            lines.insert(at + 1, f"{self.FAILED_LINE} {float(self.server.failed)}")
            body = ("\n".join(lines) + "\n").encode()
        self.answer(status, body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/v1/predict":
            self.server.predicts += 1
            if self.server.predicts % 3 == 0:
                self.server.failed += 1
                self.answer(500, b'{"error": "internal error: fake", "status": 500}')
                return
        self.answer(*self.forward(data))

    def forward(self, data: bytes | None) -> tuple[int, bytes]:
        skip = ("host", "content-length", "connection")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        request = urllib.request.Request(self.server.real + self.path, data, headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def replay(
    url: str, bodies: list[dict], pause: float = 0.1
) -> list[tuple[dict, requests.Response]]:
    with requests.Session() as session:
        answers = []
        for body in bodies:
            answers.append((body, session.post(f"{url}/v1/predict", json=body, timeout=30)))
            time.sleep(pause)
        return answers


def wait_for_model(url: str, model_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while requests.get(f"{url}/v1/model", timeout=10).json()["model_id"] != model_id:
        assert time.monotonic() < deadline, f"{url} never served {model_id}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def frame() -> pd.Series:
    return load_building("b13", DATA, weather_station=None)["load"]


def test_a_canary_answering_5xx_in_the_window_is_rolled_back(fleet, bundles, frame):
    previous, candidate = bundles[0].name, bundles[1].name
    with BrokenPredictorFake(fleet.url("edge-1")) as fake:
        fleet.urls["edge-1"] = fake.url
        start = pd.Timestamp("2016-07-04 00:00", tz="UTC")
        bodies = [
            hourly_body(frame, start + pd.Timedelta(hours=h), series="5xx") for h in range(30)
        ]
        answers: list = []

        def client() -> None:
            wait_for_model(fake.url, candidate)
            answers.extend(replay(fake.url, bodies))

        sender = threading.Thread(target=client, daemon=True)
        sender.start()
        try:
            run = fleet.cycle(
                "-e", f"ct_candidate={bundles[1]}", "-e", "ct_analysis_seconds=8", *JUDGE
            )
        finally:
            sender.join(timeout=60)
            del fleet.urls["edge-1"]
    assert run.rc != 0
    assert sum(1 for _, answer in answers if answer.status_code == 500) == fake.failed == 10
    # The window starts with the first read after the switch, the client a little earlier.
    seen = re.search(
        r"edge-1: (\d+) requests failed with a 5xx in the analysis window \(of (\d+) prediction "
        r"requests\)",
        summary(run),
    )
    assert seen, run.tail()
    assert 1 <= int(seen[1]) <= 10 and int(seen[1]) < int(seen[2]) <= 30
    assert failure(run, FAIL).startswith(f"The canaries refused {candidate} and were rolled back")
    assert fleet.serving() == dict.fromkeys(NODES, previous)


def test_a_client_clock_jump_is_scored_once_per_hour_and_the_gap_not_at_all(fleet, bundles, frame):
    previous, candidate = bundles[0].name, bundles[2].name
    start = pd.Timestamp("2016-07-10 00:00", tz="UTC")
    hours = (
        list(range(30))  # H .. H+29
        + list(range(10))  # the clock jumps back: H .. H+9 again
        + list(range(102, 112))  # and ahead three days: H+102 .. H+111
    )
    bodies = [hourly_body(frame, start + pd.Timedelta(hours=h), series="jump") for h in hours]
    answers: list = []

    def client() -> None:
        wait_for_model(fleet.url("edge-1"), candidate)
        answers.extend(replay(fleet.url("edge-1"), bodies))

    sender = threading.Thread(target=client, daemon=True)
    sender.start()
    run = fleet.cycle(
        "-e", f"ct_candidate={bundles[2]}", "-e", "ct_analysis_seconds=20", *JUDGE,
        "-e", "ct_mae_tolerance=100",
    )  # fmt: skip
    sender.join(timeout=60)
    assert run.rc == 0, run.tail()
    assert [answer.status_code for _, answer in answers] == [200] * len(hours)

    # What live accuracy must say, worked out from the answers: each (hour, lead) forecast once
    # (the repeated requests forecast the same), scored once its actual arrived; hours 54 to
    # 102, never forecast, count for nothing.
    last_seen = start + pd.Timedelta(hours=111)
    errors = {}
    for body, answer in answers:
        issued = pd.Timestamp(body["last_timestamp"])
        forecast = answer.json()
        for stamp, value in zip(forecast["timestamps"], forecast["forecast_kwh"], strict=True):
            hour = pd.Timestamp(stamp)
            if hour <= last_seen:
                errors[(hour, issued)] = abs(value - frame[hour])
    scored_hours = {hour for hour, _ in errors}
    assert len(scored_hours) == 53 + 9 and len(errors) == 30 * 24 + 45

    model = fleet.model("edge-1")
    assert model["model_id"] == candidate
    live = model["live_accuracy"]
    figures = live["models"][candidate]["7d"]
    assert (figures["hours"], figures["pairs"]) == (62, 765)
    assert figures["mae"] == pytest.approx(sum(errors.values()) / len(errors), rel=1e-4)
    assert live["models"][candidate]["corrections"] == 0 and live["series"]["restarted"] == 0
    same = model["shadow"]["same_hours"]
    assert model["shadow"]["model_id"] == previous and same["serving"]["hours"] == 62
    assert (
        f"edge-1: live MAE {same['serving']['mae']:.3f} kWh against the previous model's "
        f"{same['shadow']['mae']:.3f} kWh on the same 62 hours"
    ) in summary(run)
    assert fleet.serving() == dict.fromkeys(NODES, candidate)
