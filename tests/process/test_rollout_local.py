"""`ansible-playbook rollout-model.yml` on the embedded default: hot swaps under steady load.

The predictor is the real background service that `site.yml` starts; the load comes from a
separate process (edgecast_harness.load_client) that records every request. Twenty rollouts
alternate between two real bundles; then a refused bundle, a check-mode run and a rollback.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from edgecast_harness.bundle_faults import (
    clone_bundle,
    flip_weights_byte,
    read_manifest,
    shift_reference_outputs,
    write_manifest,
)
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.load_client import LoadProcess
from edgecast_harness.playbook import PlaybookRun, run_playbook
from edgecast_harness.ports import free_port
from edgecast_harness.predictor import edgecast

ROLLOUTS = 20


@dataclass
class LocalEdge:
    """The embedded default, served from a private var/ folder and port."""

    var: Path
    port: int
    extra: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serving(self) -> str:
        return requests.get(f"{self.url}/v1/model", timeout=10).json()["model_id"]

    def stored(self) -> list[str]:
        return sorted(p.name for p in (self.var / "models").iterdir())

    def rollout(self, *args: str) -> PlaybookRun:
        return run_playbook("rollout-model.yml", *self.extra, *args, check=False, timeout=600)


@pytest.fixture(scope="module")
def edge(trained_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    var = tmp_path_factory.mktemp("var")
    port = free_port()
    extra = ["-e", f"edgecast_var={var}", "-e", f"local_runtime_port={port}"]
    first = trained_store.root / trained_store.model_ids[0]
    run_playbook("site.yml", *extra, "-e", f"model_training_bundle={first}")
    yield LocalEdge(var, port, extra)
    edgecast("service", "stop", "--pid-file", str(var / "run/predictor.pid"), check=False)


@pytest.fixture(scope="module")
def load(edge: LocalEdge, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadProcess]:
    """Steady requests from another process while every test of this module runs."""
    out = tmp_path_factory.mktemp("load") / "requests.jsonl"
    # Bounded; the module's teardown stops it as soon as the tests end.
    with LoadProcess(edge.url, out, duration=3600) as load:
        yield load


def test_twenty_rollouts_under_load_fail_no_request(
    edge: LocalEdge, load: LoadProcess, trained_store: TrainedStore, tmp_path: Path
) -> None:
    first, second = (trained_store.root / m for m in trained_store.model_ids)
    assert edge.serving() == first.name
    archive = tmp_path / f"{second.name}.tar.gz"
    edgecast("pack", str(second), "-o", str(archive))
    time.sleep(1.0)  # the load is flowing before the first rollout
    to_serving: list[float] = []
    for number in range(ROLLOUTS):
        bundle = [archive, first][number % 2]  # a tar, then a folder, in turn
        want = [second.name, first.name][number % 2]
        started = time.time()
        result = edge.rollout("-e", f"model_bundle={bundle}")
        result.assert_ok()
        assert edge.serving() == want, f"rollout {number}"
        assert f"serving {want}" in result.stdout
        served = [
            r["start"] for r in load.records() if r["start"] >= started and r["model_id"] == want
        ]
        assert served, f"rollout {number}: no request was answered by {want}"
        to_serving.append(served[0] - started)
    done = load.records()
    failed = [r for r in done if r["status"] != 200]
    assert not failed, failed[:5]
    assert len(done) > 100
    assert edge.stored() == sorted([first.name, second.name])
    print(
        f"\n{ROLLOUTS} rollouts under load: {len(done)} requests, {len(failed)} failed; "
        f"playbook start to new model serving: median {statistics.median(to_serving):.2f} s, "
        f"max {max(to_serving):.2f} s"
    )


def test_a_repeated_rollout_changes_nothing(edge: LocalEdge) -> None:
    serving = edge.serving()
    result = edge.rollout("-e", f"model_bundle={edge.var / 'models' / serving}")
    assert result.rc == 0, result.stdout[-4000:]
    assert result.changed("localhost") == 0, result.stdout[-3000:]
    assert f"already serving {serving}" in result.stdout


def test_a_corrupted_bundle_is_refused_before_anything_moves(
    edge: LocalEdge, load: LoadProcess, trained_store: TrainedStore, tmp_path: Path
) -> None:
    before, stored = edge.serving(), edge.stored()
    bad = clone_bundle(
        trained_store.root / trained_store.model_ids[1], tmp_path, "sbn-b13-corrupted-0001"
    )
    flip_weights_byte(bad)
    result = edge.rollout("-e", f"model_bundle={bad}")
    assert result.rc != 0
    assert "bundle refused" in result.stdout and "weights.npz" in result.stdout, result.stdout
    assert edge.serving() == before
    assert edge.stored() == stored
    assert all(r["status"] == 200 for r in load.records())


def test_a_bundle_failing_parity_on_the_node_keeps_the_old_model(
    edge: LocalEdge, load: LoadProcess, trained_store: TrainedStore, tmp_path: Path
) -> None:
    before = edge.serving()
    bad = clone_bundle(
        trained_store.root / trained_store.model_ids[1], tmp_path, "sbn-b13-offparity-0001"
    )
    shift_reference_outputs(bad)
    result = edge.rollout("-e", f"model_bundle={bad}")
    assert result.rc != 0
    assert "refused the switch (422)" in result.stdout, result.stdout[-3000:]
    assert "parity check failed" in result.stdout
    assert f"still serves {before}" in result.stdout
    summary = result.stdout.split("ROLLOUT SUMMARY", 1)[-1]
    assert 'localhost: FAILED at "Switch the predictor to the model"' in summary, summary
    assert "parity check failed" in summary, summary
    assert edge.serving() == before
    assert all(r["status"] == 200 for r in load.records())
    shutil.rmtree(edge.var / "models" / bad.name)


def test_check_mode_reports_the_switch_and_changes_nothing(
    edge: LocalEdge, trained_store: TrainedStore
) -> None:
    before, stored = edge.serving(), edge.stored()
    other = next(m for m in trained_store.model_ids if m != before)
    result = edge.rollout("--check", "-e", f"model_bundle={trained_store.root / other}")
    assert result.rc == 0, result.stdout[-4000:]
    assert result.changed("localhost") >= 1
    assert edge.serving() == before
    assert edge.stored() == stored


def test_rollback_to_previous_and_to_a_named_model(
    edge: LocalEdge, load: LoadProcess, trained_store: TrainedStore
) -> None:
    before = edge.serving()
    other = next(m for m in trained_store.model_ids if m != before)
    assert edge.rollout("-e", f"model_bundle={trained_store.root / other}").rc == 0
    assert edge.serving() == other
    back = edge.rollout("-e", "rollback_to=previous")
    assert back.rc == 0, back.stdout[-3000:]
    summary = back.stdout.split("ROLLOUT SUMMARY", 1)[-1]
    assert "localhost: ok:" in summary and before in summary, summary
    assert edge.serving() == before
    named = edge.rollout("-e", f"rollback_to={other}")
    assert named.rc == 0, named.stdout[-3000:]
    assert edge.serving() == other
    missing = edge.rollout("-e", "rollback_to=sbn-b13-not-in-the-store")
    assert missing.rc != 0
    assert "not in the predictor's store" in missing.stdout
    assert edge.serving() == other
    assert all(r["status"] == 200 for r in load.records())


def test_the_token_is_read_by_a_lookup_here_and_on_the_node_elsewhere(
    edge: LocalEdge, trained_store: TrainedStore
) -> None:
    """The embedded default's node is the controller: its token file is read by a lookup, with
    no module round trip. A node that is not (forced here, on the same files) has it read on
    the node by slurp; both switch the model."""
    before = edge.serving()
    other = next(m for m in trained_store.model_ids if m != before)
    here = edge.rollout("-e", f"model_bundle={trained_store.root / other}")
    assert here.rc == 0, here.tail()
    assert list(here.results("Read the admin token on the node")) == []  # skipped
    assert edge.serving() == other
    remote = edge.rollout(
        "-e", f"model_bundle={trained_store.root / before}",
        "-e", json.dumps({"__model_rollout_token_on_controller": False}),
    )  # fmt: skip
    assert remote.rc == 0, remote.tail()
    (read,) = remote.results("Read the admin token on the node")
    assert "content" not in read and "censored" in read  # no_log hides what it read
    assert edge.serving() == before


def test_bad_arguments_fail_before_anything_changes(edge: LocalEdge) -> None:
    before, stored = edge.serving(), edge.stored()
    neither = edge.rollout()
    assert neither.rc != 0
    assert "Pass exactly one of -e model_bundle=PATH" in neither.stdout
    strategy = edge.rollout("-e", "rollback_to=previous", "-e", "rollout_strategy=teleport")
    assert strategy.rc != 0
    assert edge.serving() == before
    assert edge.stored() == stored


def test_a_model_worse_than_seasonal_naive_stays_in_the_cloud_unless_allowed(
    edge: LocalEdge, load: LoadProcess, trained_store: TrainedStore, tmp_path: Path
) -> None:
    before, stored = edge.serving(), edge.stored()
    other = next(m for m in trained_store.model_ids if m != before)
    worse = clone_bundle(trained_store.root / other, tmp_path, "sbn-b13-worse-than-naive-0001")
    manifest = read_manifest(worse)
    manifest["floor"]["ratio_to_seasonal_naive"] = 1.25
    write_manifest(worse, manifest)

    refused = edge.rollout("-e", f"model_bundle={worse}")
    assert refused.rc != 0
    assert "refused by the naive floor" in refused.stdout, refused.stdout[-3000:]
    assert "1.250x naive's" in refused.stdout
    assert "rollout_allow_worse_than_naive=true" in refused.stdout
    assert edge.serving() == before
    assert edge.stored() == stored

    allowed = edge.rollout(
        "-e", f"model_bundle={worse}", "-e", "rollout_allow_worse_than_naive=true"
    )
    allowed.assert_ok()
    assert "WARNING: sbn-b13-worse-than-naive-0001 forecasts worse than seasonal naive" in (
        allowed.stdout
    )
    assert edge.serving() == worse.name
    assert edge.rollout("-e", "rollback_to=previous").rc == 0
    assert edge.serving() == before
    assert all(r["status"] == 200 for r in load.records())


def test_a_candidate_refused_by_champion_challenger_is_never_rolled_out(
    edge: LocalEdge, load: LoadProcess, trained_store: TrainedStore, tmp_path: Path
) -> None:
    before, stored = edge.serving(), edge.stored()
    other = next(m for m in trained_store.model_ids if m != before)
    lost = clone_bundle(trained_store.root / other, tmp_path, "sbn-b13-lost-to-champion-0001")
    manifest = read_manifest(lost)
    manifest["promotion"] = {
        "decision": "refused",
        "reason": "does not beat the champion by the margin",
        "champion_id": before,
        "candidate_mae": 5.2,
        "champion_mae": 5.0,
        "margin": 0.02,
    }
    write_manifest(lost, manifest)

    # No option ships it, not even the naive floor's override.
    refused = edge.rollout(
        "-e", f"model_bundle={lost}", "-e", "rollout_allow_worse_than_naive=true"
    )
    assert refused.rc != 0
    assert "refused by champion/challenger" in refused.stdout, refused.stdout[-3000:]
    assert f"lost to the champion '{before}'" in refused.stdout
    assert edge.serving() == before
    assert edge.stored() == stored
    assert all(r["status"] == 200 for r in load.records())
