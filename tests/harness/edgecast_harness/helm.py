"""The Helm 3 command, built from its Go module by tests/infra/helm/helm.sh (cached by content)."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

import yaml

from edgecast_harness.paths import REPO

CHART = REPO / "charts" / "edgecast-predictor"
_BUILD = REPO / "tests" / "infra" / "helm" / "helm.sh"


@functools.cache
def helm_binary() -> Path:
    """The path of the pinned Helm binary; the first call may build it (minutes, cold cache)."""
    done = subprocess.run(
        ["bash", str(_BUILD)], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"building Helm failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``helm ARGS``; without a kubeconfig Helm is pointed at no cluster at all."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "HELM_CACHE_HOME": "/tmp/helm-cache"}
    env["KUBECONFIG"] = str(kubeconfig) if kubeconfig else "/dev/null"
    done = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def template_objects(
    values: dict, *, release: str = "edgecast", namespace: str = "edgecast"
) -> list[dict]:
    """``helm template`` of the chart with ``values``, as API objects."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        out = helm("template", release, str(CHART), "--namespace", namespace, "-f", file.name)
    return [obj for obj in yaml.safe_load_all(out.stdout) if obj]


def template_error(values: dict) -> str:
    """What ``helm template`` says when it refuses ``values`` (it must refuse them)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        done = helm("template", "edgecast", str(CHART), "-f", file.name, check=False)
    assert done.returncode != 0, f"helm template accepted {values}:\n{done.stdout[:2000]}"
    return done.stderr
