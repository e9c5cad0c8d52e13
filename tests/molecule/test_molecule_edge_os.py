"""Molecule scenarios of the edge_os role, run for real under qemu:
`cd roles/edge_os && molecule test -s <scenario>`.

edge_os_rpi converges an aarch64 Debian container standing in for a Raspberry Pi 4 (a prepared
/boot/firmware/cmdline.txt, a swap entry in fstab, a Raspberry Pi 4's device tree model), converges
it again and verifies the state; on Debian it gets no linux-modules-extra-raspi, which only
Ubuntu 21.10 to 23.10 needs (tests/unit/test_k3s_pitfalls.py renders that decision).
edge_os_armhf converges a 32-bit armv7l container, where the role must refuse to run with the k3s
reason and change nothing. The Docker engine and the arm64/armhf base images come from
tests/infra, so a fresh machine needs nothing else; the first image build takes minutes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecast_harness.docker import base_image
from edgecast_harness.molecule import (
    flat,
    molecule_environment,
    recap_counts,
    run_molecule,
    step_output,
)

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("arm64", "armhf")

SCENARIO_TIMEOUT_S = 1800
SCENARIO_IMAGES = {"edge_os_rpi": "arm64", "edge_os_armhf": "armhf"}


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    """A running Docker engine, molecule on PATH and an output format the checks can parse."""
    return molecule_environment()


def run_scenario(scenario: str, env: dict[str, str], log: Path) -> str:
    """Runs `molecule test -s scenario` in roles/edge_os; returns its output."""
    base_image(SCENARIO_IMAGES[scenario])
    return run_molecule("edge_os", scenario, env, log, timeout=SCENARIO_TIMEOUT_S)


def test_edge_os_rpi(molecule_env: dict[str, str], tmp_path: Path) -> None:
    output = run_scenario("edge_os_rpi", molecule_env, tmp_path / "molecule-edge_os_rpi.log")

    # The first converge changed the node (packages, fstab, cmdline.txt) ...
    converge = step_output(output, "converge")
    assert max(recap_counts(converge, "changed")) > 0, f"converge changed nothing:\n{converge}"
    assert "Add each cgroup parameter to the kernel command line" in flat(converge)
    # ... and the second changed nothing.
    idempotence = step_output(output, "idempotence")
    assert set(recap_counts(idempotence, "changed")) == {0}, f"not idempotent:\n{idempotence}"
    assert set(recap_counts(idempotence, "failed")) == {0}, idempotence
    step_output(output, "verify")


def test_edge_os_armhf_refused(molecule_env: dict[str, str], tmp_path: Path) -> None:
    output = run_scenario("edge_os_armhf", molecule_env, tmp_path / "molecule-edge_os_armhf.log")

    # Both converges ended in the role's 64-bit assertion (rescued by the scenario), with the
    # k3s reason, and neither changed anything.
    for step in ("converge", "idempotence"):
        text = step_output(output, step)
        assert set(recap_counts(text, "changed")) == {0}, f"{step} changed the node:\n{text}"
        assert set(recap_counts(text, "rescued")) == {1}, f"{step} was not refused:\n{text}"
        assert "k3s needs a 64-bit userland" in flat(text), text
    step_output(output, "verify")
