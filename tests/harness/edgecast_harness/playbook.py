"""One way to run a playbook in tests and benchmarks: ansible-runner, whose stats say what changed.

``run_playbook("site.yml", "-e", "x=1")`` runs the real ``ansible-playbook`` of this venv from the
checkout (so ``ansible.cfg`` applies) and returns a :class:`PlaybookRun`: the exit code, the
play's own per-host stats (no regular expressions over the recap), every event, and the text
output for messages a test looks for.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

from .paths import BIN, REPO

STAT_NAMES = ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
# Put first on the controller's PYTHONPATH, it makes ``import edgecast`` fail as it does where
# the package was never installed.
HIDE_EDGECAST = """
import sys


class HideEdgecast:
    def find_spec(self, name, path=None, target=None):
        if name == "edgecast" or name.startswith("edgecast."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, HideEdgecast())
"""


@dataclass
class PlaybookRun:
    """What one ``ansible-playbook`` run did."""

    args: tuple[str, ...]
    rc: int
    status: str
    stats: dict[str, dict[str, int]]
    events: list[dict[str, Any]]
    stdout: str

    def recap(self, host: str = "localhost") -> dict[str, int]:
        """The PLAY RECAP line of ``host``: ok, changed, failures, dark (unreachable), ..."""
        return {name: self.stats.get(name, {}).get(host, 0) for name in STAT_NAMES}

    def changed(self, host: str | None = None) -> int:
        """Tasks changed on ``host``, or on every host together."""
        changed = self.stats.get("changed", {})
        return changed.get(host, 0) if host else sum(changed.values())

    def changed_tasks(self, host: str | None = None) -> list[str]:
        """Names of the tasks that reported a change (on ``host``), for assertion messages."""
        return [
            f"{event['event_data'].get('host')}: {event['event_data'].get('task')}"
            for event in self.events
            if event.get("event") == "runner_on_ok"
            and event["event_data"].get("res", {}).get("changed")
            and (host is None or event["event_data"].get("host") == host)
        ]

    @property
    def hosts(self) -> list[str]:
        return sorted(self.stats.get("processed", {}))

    def failed_hosts(self) -> list[str]:
        return sorted(set(self.stats.get("failures", {})) | set(self.stats.get("dark", {})))

    def results(self, task: str, host: str | None = None) -> Iterator[dict[str, Any]]:
        """The result dicts of every run of the task named ``task`` (ok, changed or failed)."""
        for event in self.events:
            data = event.get("event_data", {})
            if event.get("event") not in ("runner_on_ok", "runner_on_failed"):
                continue
            if data.get("task") == task and (host is None or data.get("host") == host):
                yield data.get("res", {})

    def tail(self, chars: int = 4000) -> str:
        return self.stdout[-chars:]

    def assert_ok(self) -> PlaybookRun:
        assert self.rc == 0, f"ansible-playbook {shlex.join(self.args)} failed:\n{self.tail()}"
        return self


def run_playbook(
    playbook: str | Path,
    *args: str,
    check: bool = True,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
    timeout: float = 1800,
) -> PlaybookRun:
    """Runs ``ansible-playbook PLAYBOOK ARGS...`` from ``cwd``; asserts success unless ``check``
    is false. ``args`` are ansible-playbook's own options (``-i``, ``-e``, ``--check``, ``-vvv``).
    """
    playbook = str(playbook)
    private = Path(tempfile.mkdtemp(prefix="edgecast-runner-"))
    envvars = {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        # ansible-runner sets this variable (for its own callback), which hides ansible.cfg's
        # callback_plugins: name the project's again.
        "ANSIBLE_CALLBACK_PLUGINS": str(REPO / "plugins" / "callback"),
        **(env or {}),
    }
    try:
        runner = ansible_runner.run(
            private_data_dir=str(private),
            project_dir=str(cwd),
            playbook=playbook,
            cmdline=shlex.join(args) if args else None,
            envvars=envvars,
            quiet=True,
            timeout=int(timeout),
            suppress_env_files=True,
        )
        stdout = runner.stdout.read()
        events = list(runner.events)
        stats = runner.stats or {}
    finally:
        shutil.rmtree(private, ignore_errors=True)
    run = PlaybookRun((playbook, *args), runner.rc, runner.status, stats, events, stdout)
    if check:
        run.assert_ok()
    return run


def write_play(path: Path, hosts: str, tasks: list[dict[str, Any]], **keywords: Any) -> Path:
    """Writes a playbook of one play of ``tasks`` on ``hosts``, without gathering facts, and
    returns its path; ``keywords`` are more of the play's (``name``, ``vars``). It is written as
    JSON, which Ansible reads as the YAML it is."""
    play = {"hosts": hosts, "gather_facts": False, **keywords, "tasks": tasks}
    path.write_text(json.dumps([play]))
    return path


def without_edgecast(directory: Path) -> dict[str, str]:
    """The environment of a :func:`run_playbook` whose controller cannot import edgecast: a
    ``sitecustomize`` that hides it, written into ``directory``."""
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(HIDE_EDGECAST)
    return {"PYTHONPATH": str(directory)}


def playbook_python() -> str:
    """The interpreter ``ansible-playbook`` runs in, as its script names it."""
    return (BIN / "ansible-playbook").read_text().splitlines()[0].removeprefix("#!")
