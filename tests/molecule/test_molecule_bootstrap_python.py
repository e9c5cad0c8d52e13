"""Molecule scenario of playbooks/bootstrap-python.yml, run for real:
`cd roles/jetson_runtime && molecule test -s bootstrap_python`.

ansible-core 2.19 needs Python 3.8 or later on every host it manages. A Debian 12 container
without any Python gets Debian's python3; an Ubuntu 18.04 container (JetPack 4's userland, whose
own Python is 3.6, from Ubuntu's archive) with JetPack 4's universe and bionic-updates sources gets
python3.8; facts are then gathered on both with the chosen interpreter, and on the JetPack 4
stand-in a model bundle goes into a store through the node-side store module on python3.8. An
Ubuntu 18.04 container whose archive has no python3.8 is stopped with the fix and left without
one. A second run and a checked run change nothing.
"""

from __future__ import annotations

import subprocess

import pytest

from edgecast_harness.docker import base_image
from edgecast_harness.molecule import (
    flat,
    molecule_environment,
    recap_counts,
    run_molecule,
    step_output,
)
from edgecast_harness.paths import REPO

# Base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares in the
# background while earlier tests run.
BASE_IMAGES = ("amd64 nopython", "amd64 ubuntu-bionic")

SCENARIO_TIMEOUT_S = 900


def ubuntu_bionic_image() -> str:
    """local/ubuntu-amd64:bionic, debootstrapped from Ubuntu's archive by tests/infra."""
    image = subprocess.run(
        ["bash", "tests/infra/base-image.sh", "amd64", "ubuntu-bionic"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    ).stdout.split()[-1]
    assert image == "local/ubuntu-amd64:bionic", image
    return image


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> str:
    env = molecule_environment()
    base_image("amd64", "nopython")
    ubuntu_bionic_image()
    log = tmp_path_factory.mktemp("molecule-bootstrap") / "molecule-bootstrap_python.log"
    return run_molecule("jetson_runtime", "bootstrap_python", env, log, timeout=SCENARIO_TIMEOUT_S)


def test_hosts_without_a_usable_python_get_one(output: str) -> None:
    converge = step_output(output, "converge")
    # One installation on each of the two hosts, and no host stopped.
    assert recap_counts(converge, "changed") == [1, 1], converge[-3000:]
    assert set(recap_counts(converge, "failed")) == {0}, converge[-3000:]
    text = flat(converge)
    assert "changed: [edgecast-molecule-bootstrap-debian]" in text, text[-3000:]
    assert "changed: [edgecast-molecule-bootstrap-jetpack4]" in text, text[-3000:]


def test_a_second_and_a_checked_run_change_nothing(output: str) -> None:
    for step in ("idempotence", "check"):
        text = step_output(output, step)
        assert set(recap_counts(text, "changed")) == {0}, f"{step} changed:\n{text[-3000:]}"
        assert set(recap_counts(text, "failed")) == {0}, text[-3000:]


def test_facts_work_and_a_host_without_python_3_8_is_stopped_with_the_fix(output: str) -> None:
    verify = flat(step_output(output, "verify"))
    # verify.yml asserts the interpreter, the facts and the untouched refused host; its recap
    # has no failure, and the refusal it read back is in the log.
    assert set(recap_counts(verify, "failed")) == {0}, verify[-3000:]
    assert "changed: [edgecast-molecule-bootstrap-jetpack4] => (item=first)" in verify
    for phrase in (
        "edgecast-molecule-bootstrap-bionic-main (ubuntu 18.04) has no Python 3.8 or later",
        "found: /usr/bin/python3 3.6)",
        "enable universe for bionic and bionic-updates in /etc/apt/sources.list",
        "E: Unable to locate package python3.8",
        "No package was installed.",
    ):
        assert phrase in verify, phrase
