"""Run the predictor as a background service without an init system (the embedded default).

``edgecast service start`` is idempotent: a predictor already running with the same arguments
is left alone, one running with other arguments is stopped gracefully and started again, and
the command returns only once the new one is ready (or fails with the end of its log). Its JSON
answer says whether anything changed, so Ansible can report it truthfully.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """The predictor could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class ServiceState:
    running: bool
    pid: int | None
    args: list[str] | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _args_file(pid_file: Path) -> Path:
    return pid_file.with_name(pid_file.name + ".args.json")


def _alive(pid: int) -> bool:
    """True when ``pid`` runs an edgecast predictor (guards against a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"edgecast.cli" in cmdline and b"serve" in cmdline


def status(pid_file: Path) -> ServiceState:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return ServiceState(False, None, None)
    if not _alive(pid):
        return ServiceState(False, None, None)
    try:
        args = json.loads(_args_file(pid_file).read_text())
    except (OSError, ValueError):
        args = None
    return ServiceState(True, pid, args)


def stop(pid_file: Path, timeout: float = 60.0) -> bool:
    """Sends SIGTERM (graceful drain) and waits; returns whether a predictor was running."""
    state = status(pid_file)
    if state.running and state.pid is not None:
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(state.pid):
            if time.monotonic() > deadline:
                os.kill(state.pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    for path in (pid_file, _args_file(pid_file)):
        path.unlink(missing_ok=True)
    return state.running


def _wait_ready(url: str, process: subprocess.Popen, log_file: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"predictor exited with {process.returncode}: {_tail(log_file)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise ServiceError(f"predictor not ready at {url} after {timeout:.0f} s: {_tail(log_file)}")


def _tail(log_file: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    pid_file: Path, log_file: Path, serve_args: list[str], ready_url: str, timeout: float = 180.0
) -> dict[str, object]:
    """Ensures a predictor runs with ``serve_args`` and is ready; returns {changed, pid, action}."""
    state = status(pid_file)
    if state.running and state.args == serve_args:
        return {"changed": False, "action": "unchanged", "pid": state.pid}
    restarted = stop(pid_file) if state.running else False
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "edgecast.cli", "serve", *serve_args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{process.pid}\n")
    _args_file(pid_file).write_text(json.dumps(serve_args))
    try:
        _wait_ready(ready_url, process, log_file, timeout)
    except ServiceError:
        stop(pid_file)
        raise
    return {
        "changed": True,
        "action": "restarted" if restarted else "started",
        "pid": process.pid,
    }
