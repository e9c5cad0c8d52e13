"""Molecule scenarios of the edge_os role, run for real under qemu: `molecule test -s <scenario>`.

edge_os_rpi converges an aarch64 Debian container standing in for a Raspberry Pi 4 (a prepared
/boot/firmware/cmdline.txt, a swap entry in fstab), converges it again and verifies the state.
edge_os_armhf converges a 32-bit armv7l container, where the role must refuse to run with the k3s
reason and change nothing. The Docker engine and the arm64/armhf base images come from
tests/infra, so a fresh machine needs nothing else; the first image build takes minutes.
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
IMAGE_BUILD_TIMEOUT_S = 1800
SCENARIO_TIMEOUT_S = 1800
SCENARIO_IMAGES = {"edge_os_rpi": "arm64", "edge_os_armhf": "armhf"}


@pytest.fixture(scope="module")
def molecule_env() -> dict[str, str]:
    """A running Docker engine, molecule on PATH and an output format the checks can parse."""
    missing = [tool for tool in ("molecule", "ansible-playbook") if not (VENV_BIN / tool).exists()]
    assert not missing, (
        f"{', '.join(missing)} not found next to {sys.executable}: "
        "install the dev requirements (pip install -r requirements-dev.txt)"
    )
    subprocess.run(["bash", "tests/infra/docker-engine.sh"], cwd=REPO, check=True, timeout=600)
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Molecule only frames each step's playbook output between "➜ step: Executing" and
    # "➜ step: Executed" when it does markup; without a terminal that takes forcing.
    env.pop("NO_COLOR", None)
    env.update(PY_COLORS="1", ANSIBLE_FORCE_COLOR="1")
    return env


def base_image(arch: str) -> str:
    """Builds (or finds) the local Debian image of one architecture; qemu runs it."""
    image = subprocess.run(
        ["bash", "tests/infra/base-image.sh", arch],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=IMAGE_BUILD_TIMEOUT_S,
    ).stdout.split()[-1]
    assert image == f"local/debian-{arch}:bookworm", image
    return image


def run_scenario(scenario: str, env: dict[str, str], log: Path) -> str:
    """Runs `molecule test -s scenario` from the repository root; returns its output."""
    base_image(SCENARIO_IMAGES[scenario])
    result = subprocess.run(
        ["molecule", "test", "-s", scenario],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCENARIO_TIMEOUT_S,
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    log.write_text(output)
    assert result.returncode == 0, f"molecule test -s {scenario} failed ({log}):\n{output[-6000:]}"
    return output


def step_output(output: str, step: str) -> str:
    """The part of molecule's log between the start and the end of one step."""
    match = re.search(rf"➜ {step}: Executing\n(.*?)➜ {step}: Executed: (\w+)", output, re.S)
    assert match, f"molecule did not run the {step} step"
    assert match.group(2) == "Successful", f"{step}: {match.group(2)}"
    return match.group(1)


def flat(text: str) -> str:
    """The text with molecule's box drawing and line wrapping undone, to search for phrases."""
    return " ".join(text.replace("│", " ").split())


def recap_counts(step: str, name: str) -> list[int]:
    """Every `name=N` of the play recaps in one step's output."""
    counts = [int(n) for n in re.findall(rf"\b{name}=(\d+)", step)]
    assert counts, f"no play recap in this step:\n{step[-3000:]}"
    return counts


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
