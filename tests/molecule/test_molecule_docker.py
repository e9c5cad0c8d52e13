"""Molecule scenarios of the Docker roles, run for real:
`cd roles/<role> && molecule test -s <role>`.

Each scenario creates a systemd container from a local Debian image, converges its role, converges
it again (idempotence), verifies the real state inside and destroys the container. The Docker
engine and the base image come from tests/infra, so a fresh machine needs nothing else.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgecast_harness.docker import base_image
from edgecast_harness.molecule import molecule_environment, run_molecule, step_output

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64 systemd",)

SCENARIO_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    """A running Docker engine, the systemd base image, and molecule on PATH."""
    env = molecule_environment()
    base_image("amd64", "systemd")
    return env


@pytest.mark.parametrize("scenario", ["docker_engine", "jetson_runtime"])
def test_molecule_scenario(scenario: str, molecule_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / f"molecule-{scenario}.log"
    output = run_molecule(scenario, scenario, molecule_env, log, timeout=SCENARIO_TIMEOUT_S)

    # The second converge changed nothing on the host.
    idempotence = step_output(output, "idempotence")
    changed = [int(n) for n in re.findall(r"\bchanged=(\d+)", idempotence)]
    assert changed, f"no play recap in the idempotence step:\n{idempotence[-3000:]}"
    assert changed == [0] * len(changed), f"idempotence changed something:\n{idempotence[-3000:]}"

    # The first converge did change the host, so the recap above is not vacuous.
    converge = step_output(output, "converge")
    assert re.search(r"\bchanged=[1-9]", converge), f"converge changed nothing:\n{converge[-3000:]}"
    step_output(output, "verify")
