"""What the Molecule scenario tests share: the tools, a Docker engine, the base images, and
reading molecule's log.

Each role's scenarios live in the role (roles/<role>/molecule/<scenario>) and run from the role's
directory, as `cd roles/<role> && molecule test -s <scenario>`. The Docker engine and the base
images come from tests/infra, so a fresh machine needs nothing else; the first image build of an
architecture takes minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .docker import docker_engine
from .paths import BIN as VENV_BIN
from .paths import REPO

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\x1b\]8;;[^\x1b]*\x1b\\")


def molecule_environment() -> dict[str, str]:
    """A running Docker engine, molecule on PATH and an output format the checks can parse."""
    missing = [tool for tool in ("molecule", "ansible-playbook") if not (VENV_BIN / tool).exists()]
    assert not missing, (
        f"{', '.join(missing)} not found next to {sys.executable}: "
        "install the dev requirements (pip install -r requirements-dev.txt)"
    )
    docker_engine()
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    # Molecule only frames each step's playbook output between "➜ step: Executing" and
    # "➜ step: Executed" when it does markup; without a terminal (CI) that takes forcing.
    env.pop("NO_COLOR", None)
    env.update(PY_COLORS="1", ANSIBLE_FORCE_COLOR="1")
    return env


def role_dir(role: str) -> Path:
    """The role's directory, where its scenarios run from."""
    path = REPO / "roles" / role
    assert (path / "molecule").is_dir(), f"{path} has no molecule/ folder"
    return path


def run_molecule(
    role: str, scenario: str, env: dict[str, str], log: Path, *args: str, timeout: float
) -> str:
    """Runs `molecule test -s scenario [args]` in the role's directory; returns its output."""
    result = subprocess.run(
        ["molecule", "test", "-s", scenario, *args],
        cwd=role_dir(role),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    log.write_text(output)
    assert result.returncode == 0, (
        f"molecule test -s {scenario} in roles/{role} failed ({log}):\n{output[-6000:]}"
    )
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
