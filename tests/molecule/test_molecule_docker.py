"""Molecule scenarios of the Docker roles, run for real:
`cd roles/<role> && molecule test -s <role>`.

Each scenario creates systemd containers from a local Debian image, converges, converges again
(idempotence), verifies the real state inside and destroys the containers. docker_engine's nodes
start without Docker and install it for real; the Jetson stand-in of jetson_runtime starts with an
engine in its image (the `docker` flavour), which provisioning must keep. The Docker engine and the
base images come from tests/infra, so a fresh machine needs nothing else.
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
BASE_IMAGES = ("amd64 systemd", "amd64 docker")

SCENARIO_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    """A running Docker engine, the base images, and molecule on PATH."""
    env = molecule_environment()
    for flavour in ("systemd", "docker"):
        base_image("amd64", flavour)
    return env


@pytest.mark.parametrize("scenario", ["docker_engine", "jetson_runtime"])
def test_molecule_scenario(scenario: str, molecule_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / f"molecule-{scenario}.log"
    output = run_molecule(scenario, scenario, molecule_env, log, timeout=SCENARIO_TIMEOUT_S)

    # The second converge changed nothing on the host.
    idempotence = step_output(output, "idempotence")
    assert set(recap_counts(idempotence, "changed")) == {0}, idempotence[-3000:]

    # The first converge did change the host, so the recap above is not vacuous.
    converge = step_output(output, "converge")
    assert max(recap_counts(converge, "changed")) > 0, converge[-3000:]
    step_output(output, "verify")

    if scenario == "jetson_runtime":
        # The engine found on the node was kept, and --check on the provisioned node is clean.
        assert "Docker Engine is already installed (docker-ce" in flat(converge), converge[-3000:]
        check = step_output(output, "check")
        assert set(recap_counts(check, "changed")) == {0}, f"--check changed:\n{check[-3000:]}"
