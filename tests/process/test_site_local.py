"""`ansible-playbook site.yml` on the embedded default inventory: trains on the shipped data,
serves the model on 127.0.0.1 as a background service, answers over HTTP, and a second run
(checked and real) changes nothing."""

from __future__ import annotations

import pytest
import requests

from edgecast_harness.bodies import window_from_data
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import run_playbook
from edgecast_harness.ports import free_port
from edgecast_harness.predictor import edgecast


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


@pytest.mark.parametrize(
    "playbook",
    [
        "site.yml",
        *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "playbooks").glob("*.yml")),
    ],
)
def test_every_playbook_passes_the_syntax_check(playbook):
    run_playbook(playbook, "--syntax-check")
