"""`ansible-playbook site.yml` on the embedded default inventory: trains on the shipped data,
serves the model on 127.0.0.1 as a background service, answers over HTTP, and a second run
(checked and real) changes nothing."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from edgecast_harness.bodies import window_from_data
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import run_playbook
from edgecast_harness.ports import free_port
from edgecast_harness.predictor import edgecast

BODY = window_from_data()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    var = tmp_path_factory.mktemp("var")
    port = free_port()
    extra = ["-e", f"edgecast_var={var}", "-e", f"local_runtime_port={port}"]
    first = run_playbook("site.yml", *extra)
    yield var, port, extra, first
    edgecast("service", "stop", "--pid-file", str(var / "run/predictor.pid"), check=False)


def test_first_run_trains_serves_and_prints_a_forecast(site):
    var, port, _, first = site
    bundles = sorted(p.name for p in (var / "models").iterdir())
    assert len(bundles) == 1
    assert bundles[0].startswith("sbn-b13-")
    assert first.changed("localhost") >= 2  # trained, started
    assert f"forecast by {bundles[0]}" in first.stdout
    assert "held-out accuracy for b13" in first.stdout
    # training's progress, one line per epoch, and the accuracy as an aligned table; none of
    # TensorFlow's own lines (its CUDA probe, the SavedModel export's listing)
    (progress,) = first.results("Show how training went")
    assert any(line.startswith("b13: epoch  1/40  loss ") for line in progress["msg"])
    (table,) = first.results("Show the held-out accuracy")
    header = "model MAE kWh RMSE kWh MAPE % CV(RMSE) %"
    assert table["msg"][1].split() == header.split()
    rows = [line.split()[0] for line in table["msg"][2:]]
    assert rows == ["sbn", "seasonal_naive", "linear", "bundle:"]
    assert len({len(line) for line in table["msg"][1:5]}) == 1  # columns aligned
    for chatter in ("Captures:", "TensorSpec", "cuInit", "cudart", "oneDNN", "AutoGraph"):
        assert chatter not in first.stdout
    response = requests.post(
        f"http://127.0.0.1:{port}/v1/predict", json=window_from_data(), timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == bundles[0]
    assert (var / "run/predictor.pid").read_text().strip().isdigit()
    assert "ready: serving" in (var / "run/predictor.log").read_text()


def test_check_mode_then_a_second_run_change_nothing(site):
    var, _, extra, _ = site
    pid = (var / "run/predictor.pid").read_text()
    checked = run_playbook("site.yml", "--check", *extra)
    assert checked.changed() == 0, checked.tail()
    again = run_playbook("site.yml", *extra)
    assert again.changed() == 0, again.tail()
    assert (var / "run/predictor.pid").read_text() == pid  # not restarted
    assert len(list((var / "models").iterdir())) == 1  # not trained again


def test_changed_settings_restart_the_predictor(site):
    var, port, extra, _ = site
    pid = (var / "run/predictor.pid").read_text()
    result = run_playbook("site.yml", *extra, "-e", "local_runtime_runtime=litert")
    assert result.changed() == 1, result.tail()
    assert (var / "run/predictor.pid").read_text() != pid
    answer = requests.post(
        f"http://127.0.0.1:{port}/v1/predict", json=window_from_data(), timeout=10
    ).json()
    assert answer["runtime"] == "litert"


def test_status_shows_what_the_predictor_serves_and_how_it_served(site, tmp_path):
    var, port, extra, _ = site
    (model_id,) = (p.name for p in (var / "models").iterdir())
    sent = {200: 0, 400: 0}
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                good = session.post(f"http://127.0.0.1:{port}/v1/predict", json=BODY, timeout=10)
                bad = session.post(f"http://127.0.0.1:{port}/v1/predict", json={}, timeout=10)
                sent[good.status_code] += 1
                sent[bad.status_code] += 1

    # a day later, the first window's forecast hours have actuals: the predictor scores them
    for end in ("2017-12-19 23:00", "2017-12-20 23:00"):
        body = window_from_data(end=end)
        assert requests.post(f"http://127.0.0.1:{port}/v1/predict", json=body, timeout=10).ok
    out = tmp_path / "status.json"
    client = threading.Thread(target=load)
    client.start()
    try:
        table = run_playbook("status.yml", *extra, "-e", "status_interval=2")
        as_json = run_playbook(
            "status.yml", *extra, "-e", "status_format=json", "-e", f"status_output={out}"
        )
    finally:
        stop.set()
        client.join()
    (row,) = json.loads(out.read_text())
    assert row["node"] == "localhost" and row["error"] is None
    model = requests.get(f"http://127.0.0.1:{port}/v1/model", timeout=10).json()
    assert (row["model_id"], row["runtime"], row["ready"]) == (model_id, model["runtime"], True)
    live = model["live_accuracy"]["models"][model_id]["7d"]
    assert live["pairs"] >= 24 and row["live_mae_7d"] == live["mae"] > 0
    assert row["parity_max_abs_diff"] < 1e-3
    # both kinds were sent all along: the interval saw some of each, and no 5xx
    assert 0 < row["requests"] <= sent[200] + sent[400]
    assert row["errors_5xx"] == 0
    assert 0 < row["p99_ms"] < 1000
    assert as_json.changed() == 1  # the JSON file
    header = next(line for line in table.stdout.splitlines() if "NODE" in line)
    assert header.split()[:4] == ["NODE", "PROFILE", "RUNTIME", "MODEL"], header
    assert any(model_id in line and "yes" in line for line in table.stdout.splitlines())


def test_status_of_a_predictor_that_does_not_answer_says_why(site):
    _, _, extra, _ = site
    dead = free_port()
    result = run_playbook("status.yml", *extra, "-e", f"local_runtime_port={dead}")
    assert result.rc == 0, result.tail()
    assert f"localhost: not read: GET http://127.0.0.1:{dead}/v1/model" in result.stdout


def test_status_refuses_an_unknown_format_before_reading(site):
    _, _, extra, _ = site
    result = run_playbook("status.yml", *extra, "-e", "status_format=xml", check=False)
    assert result.rc != 0
    assert "status_format is table or json (got xml)" in result.stdout
    assert result.recap()["ok"] == 0


@pytest.mark.parametrize(
    "playbook",
    [
        "site.yml",
        "rollout-model.yml",
        "status.yml",
        "continuous-training.yml",
        *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "playbooks").glob("*.yml")),
    ],
)
def test_every_playbook_passes_the_syntax_check(playbook):
    run_playbook(playbook, "--syntax-check")
