"""Shared fixtures: bundles trained on the shipped data, and real predictor processes.

Every predictor here is a real ``edgecast serve`` process (waitress) called over HTTP on
127.0.0.1; every bundle is trained by the real ``edgecast train`` on the shipped data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from background import BackgroundJob

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "cambridge-estates"
ADMIN_TOKEN = "test-admin-token-0123456789"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests on the real cluster run last; slow preparations start now in the background.

    The cluster build and the Debian base images that the selected tests name (a module's
    ``BASE_IMAGES``) are made while the other tests run; see background.py. ``trylast`` so
    that this sees the selection after ``-k``/``-m`` deselection.
    """
    from cluster_support import background_build, uses_cluster

    on_cluster = [item for item in items if uses_cluster(item)]
    items[:] = [item for item in items if not uses_cluster(item)] + on_cluster
    if config.option.collectonly:
        return
    images: list[str] = []
    for item in items:
        for image in getattr(item.module, "BASE_IMAGES", ()) if item.module else ():
            if image not in images:
                images.append(image)
    if images:
        # Tarballs only: the test's own base-image.sh call (after Docker is up) imports them,
        # or waits on the image's lock while one is made. The first image needed comes first;
        # the others are made side by side (debootstrap waits on downloads, and under qemu on
        # one emulated core each).
        script = (
            'export EDGECAST_BASE_IMAGE_NO_IMPORT=1; bash "$1" $2; '
            'for image in "${@:3}"; do bash "$1" $image & done; wait'
        )
        base_image = str(REPO / "tests" / "infra" / "base-image.sh")
        base_image_prefetch.start("bash", "-c", script, "prefetch", base_image, *images)
    if on_cluster:
        background_build.start("bash", str(REPO / "tests/infra/cluster/cluster.sh"), "build")


base_image_prefetch = BackgroundJob("base-images")


def pytest_sessionfinish(session: pytest.Session) -> None:
    from cluster_support import background_build

    background_build.stop()
    base_image_prefetch.stop()


def edgecast(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
    """Runs the real CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "edgecast.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class TrainedStore:
    """A model store holding two bundles of building b13 (different seeds, different weights)."""

    root: Path
    model_ids: list[str]

    def copy_to(self, dest: Path, *model_ids: str) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        for model_id in model_ids or self.model_ids:
            shutil.copytree(self.root / model_id, dest / model_id)
        return dest


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    root = tmp_path_factory.mktemp("store")
    edgecast("train", "--building", "b13", "--out", str(root), "--seed", "0")
    edgecast("train", "--building", "b13", "--out", str(root), "--seed", "1", "--epochs", "4")
    ids = sorted(p.name for p in root.iterdir())
    assert len(ids) == 2, ids
    return TrainedStore(root, ids)


@dataclass
class Predictor:
    url: str
    process: subprocess.Popen
    log_path: Path
    token: str | None = None
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text()

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

    def wait_alive(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
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
    ) -> Predictor:
        port = free_port()
        log_path = self.directory / f"predictor-{port}.log"
        command = [sys.executable, "-m", "edgecast.cli", "serve", "--store", str(store)]
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


@pytest.fixture
def start_predictor(tmp_path: Path) -> Iterator:
    """Factory: start_predictor(store, *args, admin=False, wait=True) -> Predictor."""
    launcher = PredictorLauncher(tmp_path)
    yield launcher.start
    launcher.stop_all()


def window_from_data(building: str = "b13", end: str = "2017-12-20 23:00") -> dict:
    """A valid request body: 600 real hourly loads ending at ``end`` (UTC)."""
    from edgecast.data import load_building

    frame = load_building(building, DATA, weather_station=None)
    loads = frame["load"].loc[:end].iloc[-600:]
    return {
        "loads": [float(v) for v in loads],
        "last_timestamp": loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def manifest_of(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())
