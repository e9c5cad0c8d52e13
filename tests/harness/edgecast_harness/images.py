"""The predictor image, built once per test run by the predictor_image role, for every tier.

The container tier checks the build itself (context, labels, a second run, a code change); the
cluster tier deploys the same image. Building it once saves a cold ``docker build`` per run.
The image is built from a copy of the package source, so a test may change that copy.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .docker import AMD64_BASE_IMAGE, base_image, docker, docker_engine
from .paths import HOST_CA_BUNDLE, REPO
from .playbook import PlaybookRun, run_playbook

PLAYBOOK = "playbooks/predictor-image.yml"
BUILD_STAGE_LABEL = "io.edgecast.build-stage-of"
REVISION = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class BuiltImage:
    """An image the role built on this machine, and how to run the role again for it."""

    ref: str
    source_dir: Path
    build_dir: Path
    inventory: Path
    extra_vars: str  # "@file" of the role's variables
    first_run: PlaybookRun

    def run_role(self, *args: str, check: bool = True) -> PlaybookRun:
        return run_playbook(
            PLAYBOOK, "-i", str(self.inventory), "-e", self.extra_vars, *args, check=check
        )

    def remove(self) -> None:
        docker("image", "rm", self.ref, check=False)
        label = f"label={BUILD_STAGE_LABEL}={self.ref}"
        docker("image", "prune", "--force", "--filter", label, check=False)


def local_edge_inventory(directory: Path, group: str | None = None) -> Path:
    """localhost in `edge` (and in `group`), reached without ssh or sudo: the tests run as root."""
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    children: dict[str, object] = {"rpi": {}, "jetson": {}}
    if group:
        children[group] = {"hosts": {"localhost": {}}}
    inventory = {
        "all": {
            "children": {"edge": {"hosts": {"localhost": host}, "children": children}},
            "vars": {"edgecast_deployment": "k3s", "k3s_container_runtime": "docker"},
        }
    }
    path = directory / "inventory.yml"
    path.write_text(json.dumps(inventory))
    return path


def copy_source(directory: Path) -> Path:
    """The package source as a checkout has it, caches and hidden folders included."""
    app = directory / "app"
    app.mkdir(parents=True)
    shutil.copy2(REPO / "app" / "pyproject.toml", app / "pyproject.toml")
    shutil.copytree(REPO / "app" / "edgecast", app / "edgecast")
    cache = app / "edgecast" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "stale.cpython-311.pyc").write_bytes(b"\0")
    (app / "edgecast" / ".mypy_cache").mkdir()
    (app / "edgecast" / ".mypy_cache" / "cache.json").write_text("{}")
    (app / ".venv" / "bin").mkdir(parents=True)
    (app / ".venv" / "bin" / "python").write_text("")
    return app


def build_predictor_image(work: Path) -> BuiltImage:
    """Runs the predictor_image role against this machine: a real, cold ``docker build``."""
    docker_engine()
    assert base_image("amd64") == AMD64_BASE_IMAGE
    ref = f"edgecast-predictor:test-{secrets.token_hex(4)}"
    source_dir = copy_source(work / "src")
    extra_vars = {
        "predictor_image_tag": ref.split(":", 1)[1],
        "predictor_image_base_image": AMD64_BASE_IMAGE,
        "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
        "predictor_image_source_dir": str(source_dir),
        "predictor_image_build_dir": str(work / "context"),
        "predictor_image_revision": REVISION,
    }
    vars_file = work / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    inventory = local_edge_inventory(work)
    started = time.monotonic()
    first = run_playbook(PLAYBOOK, "-i", str(inventory), "-e", f"@{vars_file}")
    print(f"\npredictor image {ref} built in {time.monotonic() - started:.0f} s")
    return BuiltImage(ref, source_dir, work / "context", inventory, f"@{vars_file}", first)
