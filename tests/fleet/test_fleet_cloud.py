"""The cloud play on a real remote host: `playbooks/train.yml` over SSH with sudo.

The cloud host starts with nothing of edgecast: the model_training role installs the package
and its pinned training dependencies into a virtual environment there, copies the sample data,
trains, and brings the bundle back to the controller, where it is verified. A second run
changes nothing: no new install, no new training, the same bundle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecast.bundle import load_bundle_dir
from edgecast_harness.fleet import Fleet
from edgecast_harness.images import copy_source
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import PlaybookRun, run_playbook

BASE_IMAGES = ("amd64 systemd",)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package source as this checkout has it, caches included, fixed for the module."""
    return copy_source(tmp_path_factory.mktemp("source"))


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cloud-bundles")


def train(fleet: Fleet, source: Path, fetched: Path, *args: str) -> PlaybookRun:
    extra = (
        "-e",
        f"model_training_fetch_dir={fetched}",
        "-e",
        f"model_training_source_dir={source}",
    )
    return run_playbook("playbooks/train.yml", "-i", str(fleet.inventory), *extra, *args)


@pytest.fixture(scope="module")
def trained(fleet: Fleet, source: Path, fetched: Path) -> PlaybookRun:
    return train(fleet, source, fetched)


def test_the_cloud_host_is_installed_and_trains_over_ssh(
    fleet: Fleet, fetched: Path, trained: PlaybookRun
) -> None:
    assert trained.changed("cloud-1") >= 4, trained.tail()  # installed, trained, fetched
    (model_id,) = [p.name for p in fetched.iterdir()]
    bundle = load_bundle_dir(fetched / model_id)  # the controller's copy verifies
    assert bundle.model_id.startswith("sbn-b13-")
    listed = fleet["cloud-1"].run(f"ls /var/lib/edgecast/cloud/bundles/{model_id}").split()
    assert sorted(listed) == sorted(p.name for p in (fetched / model_id).iterdir())
    owner = fleet["cloud-1"].run("stat -c %U /opt/edgecast/.venv/bin/edgecast").strip()
    assert owner == "root"  # installed through sudo, not as the login user
    script = "import tensorflow; print(tensorflow.__version__)"
    version = fleet["cloud-1"].run(f"/opt/edgecast/.venv/bin/python -c '{script}'").strip()
    pins = [line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert version == dict(pin for pin in pins if len(pin) == 2)["tensorflow"]
    verified = [r for r in trained.results("Verify the fetched bundle on the controller")]
    assert [r["model_id"] for r in verified] == [model_id]


def test_a_second_run_changes_nothing(
    fleet: Fleet, source: Path, fetched: Path, trained: PlaybookRun
) -> None:
    before = sorted(p.name for p in fetched.iterdir())
    again = train(fleet, source, fetched)
    assert again.changed("cloud-1") == 0, again.changed_tasks()
    assert sorted(p.name for p in fetched.iterdir()) == before
    checked = train(fleet, source, fetched, "--check")
    assert checked.changed("cloud-1") == 0, checked.changed_tasks()
