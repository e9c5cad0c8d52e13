"""Molecule scenarios of the Docker roles, run for real: `molecule test -s <scenario>`.

Each scenario creates a systemd container from a local Debian image, converges its role, converges
it again (idempotence), verifies the real state inside and destroys the container. The Docker
engine and the base image come from tests/infra, so a fresh machine needs nothing else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;;[^\x1b]*\x1b\\")
SCENARIO_TIMEOUT_S = 1500


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    """A running Docker engine, the systemd base image, and molecule on PATH."""
    missing = [tool for tool in ("molecule", "ansible-playbook") if not (VENV_BIN / tool).exists()]
    assert not missing, (
        f"{', '.join(missing)} not found next to {sys.executable}: "
        "install the dev requirements (pip install -r requirements-dev.txt)"
    )
    subprocess.run(["bash", "tests/infra/docker-engine.sh"], cwd=REPO, check=True, timeout=600)
    image = subprocess.run(
        ["bash", "tests/infra/base-image.sh", "amd64", "systemd"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
    ).stdout.split()[-1]
    assert image == "local/debian-amd64-systemd:bookworm", image
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Molecule frames each step's output ("➜ step: Executing" ... "Executed") only when it does
    # markup; without a terminal (CI) that takes forcing.
    env.pop("NO_COLOR", None)
    env.update(PY_COLORS="1", ANSIBLE_FORCE_COLOR="1")
    return env


def step_output(output: str, step: str) -> str:
    """The part of molecule's log between the start and the end of one step."""
    match = re.search(rf"➜ {step}: Executing\n(.*?)➜ {step}: Executed: (\w+)", output, re.S)
    assert match, f"molecule did not run the {step} step"
    assert match.group(2) == "Successful", f"{step}: {match.group(2)}"
    return match.group(1)


@pytest.mark.parametrize("scenario", ["docker_engine", "jetson_runtime"])
def test_molecule_scenario(scenario: str, molecule_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=REPO,
        env=molecule_env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    log = tmp_path / f"molecule-{scenario}.log"
    log.write_text(output)
    assert result.returncode == 0, f"molecule test -s {scenario} failed ({log}):\n{output[-6000:]}"

    # The second converge changed nothing on the host.
    idempotence = step_output(output, "idempotence")
    changed = [int(n) for n in re.findall(r"\bchanged=(\d+)", idempotence)]
    assert changed, f"no play recap in the idempotence step:\n{idempotence[-3000:]}"
    assert changed == [0] * len(changed), f"idempotence changed something:\n{idempotence[-3000:]}"

    # The first converge did change the host, so the recap above is not vacuous.
    converge = step_output(output, "converge")
    assert re.search(r"\bchanged=[1-9]", converge), f"converge changed nothing:\n{converge[-3000:]}"
    step_output(output, "verify")
