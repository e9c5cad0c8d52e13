"""Real ``edgecast serve`` processes on loopback ports, and the real CLI in a child process."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

import requests

from .paths import REPO
from .ports import free_port

ADMIN_TOKEN = "test-admin-token-0123456789"
# The unit tier's golden bundle (LiteRT): a predictor serving it is ready in about a second.
GOLDEN_STORE = REPO / "tests" / "unit" / "fixtures" / "bundles"
# Root, less the capabilities that let it read and search any file: permissions then apply to
# it as to any user.
WITHOUT_FILE_PRIVILEGES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def edgecast(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
    """Runs the real CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "edgecast.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        **kwargs,
    )


@dataclass
class Predictor:
    url: str
    process: subprocess.Popen
    log_path: Path
    token: str | None = None
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, timeout=10, **kwargs)

    def admin(self, path: str, body: dict | None = None) -> requests.Response:
        return requests.post(
            self.url + path,
            json=body if body is not None else {},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=120,
        )

    def wait_ready(self, timeout: float = 90) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"predictor exited {self.process.returncode}:\n{self.log()}")
            try:
                response = self.get("/readyz")
                if response.status_code == 200:
                    return response.json()
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"predictor not ready after {timeout} s:\n{self.log()}")

    def wait_alive(self, timeout: float = 90) -> None:
        """Until /healthz answers 200 (as long as wait_ready allows: on a loaded 2-core machine
        the process's imports alone have taken over 30 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"predictor exited {self.process.returncode}:\n{self.log()}")
            try:
                if self.get("/healthz").status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"predictor not alive after {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class PredictorLauncher:
    """Starts real ``edgecast serve`` processes on free loopback ports and stops them all."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Predictor] = []

    def start(
        self,
        store: Path,
        *args: str,
        admin: bool = False,
        wait: bool = True,
        env: dict | None = None,
        unprivileged: bool = False,
    ) -> Predictor:
        """``unprivileged``: as root, the predictor runs without root's power to read any file
        (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), as the image's own user would."""
        port = free_port()
        log_path = self.directory / f"predictor-{port}.log"
        command = [sys.executable, "-m", "edgecast.cli", "serve", "--store", str(store)]
        if unprivileged and os.geteuid() == 0:
            command = [*WITHOUT_FILE_PRIVILEGES, *command]
        command += ["--port", str(port), *args]
        token = None
        if admin:
            token_file = self.directory / f"token-{port}"
            token_file.write_text(ADMIN_TOKEN + "\n")
            command += ["--admin-token-file", str(token_file)]
            token = ADMIN_TOKEN
        with log_path.open("w") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        predictor = Predictor(f"http://127.0.0.1:{port}", process, log_path, token, command)
        self.started.append(predictor)
        if wait:
            predictor.wait_ready()
        return predictor

    def stop_all(self) -> None:
        for predictor in self.started:
            predictor.stop()


@dataclass
class RawAnswer:
    status: int
    headers: Message
    text: str


def send_raw(port: int, data: bytes, timeout: float = 10) -> RawAnswer:
    """Sends ``data`` as is on a new connection to 127.0.0.1:``port`` and reads one answer.

    A server may answer before it has read everything (a 413 on the announced length); the
    rest of the sending may then fail, and the answer is read all the same.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        text = response.read().decode(errors="replace")
        return RawAnswer(response.status, response.headers, text)
