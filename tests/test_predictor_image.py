"""The predictor image, built for real: `ansible-playbook playbooks/predictor-image.yml` runs the
predictor_image role against this machine, which builds the image with Docker from the Debian
base made by tests/infra/base-image.sh, through pip and this machine's TLS-intercepting proxy
(the extra CA bundle). A second run and a checked run change nothing. The image is then run the
way the predictor Deployment runs it (user, read-only root, /tmp, the store at /models and the
container arguments, all read from the manifest that edgecast.deploy.manifests renders) and
answers a real forecast over HTTP. The render-only tests check the rpi and jetson Dockerfiles
without building them (no arm64 base image or Jetson exists here).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from conftest import REPO, TrainedStore, free_port, window_from_data
from edgecast.deploy.manifests import PredictorSpec, render

BIN = Path(sys.executable).parent

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64",)
PLAYBOOK = "playbooks/predictor-image.yml"
BASE_IMAGE = "local/debian-amd64:bookworm"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
BUILD_STAGE_LABEL = "io.edgecast.build-stage-of"
DIGEST_LABEL = "io.edgecast.context-digest"
REVISION = "0123456789abcdef0123456789abcdef01234567"
SERVING_PINS = (
    "ai-edge-litert",
    "numpy",
    "pandas",
    "flask",
    "waitress",
    "prometheus-client",
    "cryptography",
)
# Run inside the container: installed versions, and what must not be there.
INSPECT_SCRIPT = f"""
import importlib.metadata, importlib.util, json, os
print(json.dumps({{
    "versions": {{n: importlib.metadata.version(n) for n in {list(SERVING_PINS)!r}}},
    "tensorflow": importlib.util.find_spec("tensorflow") is not None,
    "build_dir": os.path.exists("/build"),
    "uid": os.getuid(),
}}))
"""


def ansible(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def succeeded(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout


def recap(output: str) -> dict[str, int]:
    match = re.search(
        r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output
    )
    assert match, output[-3000:]
    return dict(
        zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()), strict=True)
    )


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr[-3000:]}"
    return result


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def write_inventory(directory: Path, group: str | None = None) -> Path:
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
            "vars": {"edgecast_deployment": "k3s"},
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


def from_lines(dockerfile: Path) -> list[str]:
    return [line for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]


@dataclass
class BuiltImage:
    ref: str
    source_dir: Path
    build_dir: Path
    inventory: Path
    extra_vars: str
    first_run: str


@pytest.fixture(scope="module")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuiltImage]:
    subprocess.run(["bash", "tests/infra/docker-engine.sh"], cwd=REPO, check=True, timeout=600)
    base = subprocess.run(
        ["bash", "tests/infra/base-image.sh", "amd64"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=1200,
    ).stdout.split()[-1]
    assert base == BASE_IMAGE, base
    work = tmp_path_factory.mktemp("predictor-image")
    ref = f"edgecast-predictor:test-{secrets.token_hex(4)}"
    source_dir = copy_source(work / "src")
    extra_vars = {
        "predictor_image_tag": ref.split(":", 1)[1],
        "predictor_image_base_image": BASE_IMAGE,
        "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
        "predictor_image_source_dir": str(source_dir),
        "predictor_image_build_dir": str(work / "context"),
        "predictor_image_revision": REVISION,
    }
    vars_file = work / "vars.json"
    vars_file.write_text(json.dumps(extra_vars))
    inventory = write_inventory(work)
    try:
        started = time.monotonic()
        first = succeeded(ansible("-i", str(inventory), PLAYBOOK, "-e", f"@{vars_file}"))
        print(f"first run (cold build): {time.monotonic() - started:.0f} s")
        yield BuiltImage(ref, source_dir, work / "context", inventory, f"@{vars_file}", first)
    finally:
        docker("image", "rm", ref, check=False)
        docker(
            "image", "prune", "--force", "--filter", f"label={BUILD_STAGE_LABEL}={ref}", check=False
        )


def test_the_role_builds_the_image_from_the_build_context_only(built_image: BuiltImage) -> None:
    assert recap(built_image.first_run)["changed"] >= 2, built_image.first_run[-3000:]
    context = sorted(
        p.relative_to(built_image.build_dir).as_posix() for p in built_image.build_dir.rglob("*")
    )
    assert {"Dockerfile", "constraints.txt", "extra-ca.pem", "app/pyproject.toml"} <= set(context)
    assert "app/edgecast/predictor/server.py" in context
    assert not [p for p in context if "__pycache__" in p or p.endswith(".pyc") or "/." in p]
    assert not [
        p
        for p in context
        if p.startswith("app/") and not p.startswith(("app/edgecast", "app/pyproject"))
    ]
    constraints = (built_image.build_dir / "constraints.txt").read_text().splitlines()
    pins = pinned_versions()
    for name in SERVING_PINS:
        assert f"{name}=={pins[name]}" in constraints
    assert from_lines(built_image.build_dir / "Dockerfile") == [
        f"FROM {BASE_IMAGE} AS build",
        f"FROM {BASE_IMAGE}",
    ]


def test_the_image_carries_the_contract_of_the_deployment(built_image: BuiltImage) -> None:
    image = json.loads(docker("image", "inspect", built_image.ref).stdout)[0]
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["/opt/edgecast/bin/edgecast"]
    assert config["Cmd"][0] == "serve"
    version = tomllib.loads((REPO / "app" / "pyproject.toml").read_text())["project"]["version"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["org.opencontainers.image.revision"] == REVISION
    assert re.fullmatch(r"[0-9a-f]{64}", labels[DIGEST_LABEL])
    assert not [e for e in config["Env"] if e.startswith(("PIP_", "SSL_", "REQUESTS_"))]


def test_a_second_run_and_a_checked_run_change_nothing(built_image: BuiltImage) -> None:
    image_id = docker("image", "inspect", "--format", "{{.Id}}", built_image.ref).stdout
    args = ("-i", str(built_image.inventory), PLAYBOOK, "-e", built_image.extra_vars)
    again = succeeded(ansible(*args))
    assert recap(again)["changed"] == 0, again[-4000:]
    checked = succeeded(ansible("--check", *args))
    assert recap(checked)["changed"] == 0, checked[-4000:]
    assert docker("image", "inspect", "--format", "{{.Id}}", built_image.ref).stdout == image_id


def test_the_image_serves_a_forecast_run_as_the_deployment_runs_it(
    built_image: BuiltImage, trained_store: TrainedStore, tmp_path: Path
) -> None:
    model_id = trained_store.model_ids[0]
    store = trained_store.copy_to(tmp_path / "store", model_id)
    for path in [store, *store.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user 10001

    deployment = render(PredictorSpec(node="edge-test", model_id=model_id, image=built_image.ref))[
        "deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == built_image.ref
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    container_port = container["ports"][0]["containerPort"]
    host_port = free_port()
    name = f"edgecast-predictor-test-{secrets.token_hex(4)}"
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--user",
        user,
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        f"{mounts['tmp']['mountPath']}:size=64m",
        "--volume",
        f"{store}:{mounts['models']['mountPath']}:ro",
        "--publish",
        f"127.0.0.1:{host_port}:{container_port}",
        built_image.ref,
        *container["args"],
    )
    url = f"http://127.0.0.1:{host_port}"
    try:
        wait_ready(name, url)
        response = requests.post(f"{url}/v1/predict", json=window_from_data(), timeout=30)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_id"] == model_id
        assert answer["runtime"] == "litert"
        assert len(answer["forecast_kwh"]) == 24
        assert all(isinstance(v, float) for v in answer["forecast_kwh"])
        assert requests.get(f"{url}/readyz", timeout=10).status_code == 200

        # The preStop hook's command runs, and the image holds the pinned serving packages,
        # no TensorFlow and nothing of its build stage.
        docker("exec", name, *container["lifecycle"]["preStop"]["exec"]["command"])
        inside = json.loads(docker("exec", name, "python", "-c", INSPECT_SCRIPT).stdout)
        pins = pinned_versions()
        assert inside["versions"] == {n: pins[n] for n in SERVING_PINS}
        assert (inside["tensorflow"], inside["build_dir"], inside["uid"]) == (False, False, 10001)

        # SIGTERM as the kubelet sends it: the predictor drains and exits 0.
        docker("stop", "--time", "60", name, timeout=120)
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["ExitCode"] == 0, docker("logs", name, check=False).stderr[-3000:]
    finally:
        docker("rm", "--force", name, check=False)


def test_a_code_change_rebuilds_and_removes_the_replaced_image(built_image: BuiltImage) -> None:
    old_id = docker("image", "inspect", "--format", "{{.Id}}", built_image.ref).stdout.strip()
    source = Path(
        json.loads(Path(built_image.extra_vars[1:]).read_text())["predictor_image_source_dir"]
    )
    with (source / "edgecast" / "store.py").open("a") as module:
        module.write("# changed\n")
    stray = built_image.build_dir / "app" / "edgecast" / "stray.py"
    stray.write_text("raise SystemExit('not part of the package')\n")

    started = time.monotonic()
    output = succeeded(
        ansible("-i", str(built_image.inventory), PLAYBOOK, "-e", built_image.extra_vars)
    )
    print(f"run after a code change (warm build): {time.monotonic() - started:.0f} s")
    assert recap(output)["changed"] >= 3, output[-4000:]  # copied, stray removed, built
    assert not stray.exists()
    new_id = docker("image", "inspect", "--format", "{{.Id}}", built_image.ref).stdout.strip()
    assert new_id != old_id
    assert docker("image", "inspect", old_id, check=False).returncode != 0  # replaced, removed
    installed = docker(
        "run",
        "--rm",
        "--entrypoint",
        "python",
        built_image.ref,
        "-c",
        "import edgecast.store, inspect; print(inspect.getsource(edgecast.store)[-10:])",
    ).stdout
    assert "# changed" in installed


def wait_ready(name: str, url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if running != "true":
            logs = docker("logs", name, check=False)
            raise AssertionError(f"container exited:\n{logs.stdout[-2000:]}{logs.stderr[-3000:]}")
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    logs = docker("logs", name, check=False)
    raise AssertionError(f"not ready after {timeout} s:\n{logs.stderr[-3000:]}")


@pytest.mark.parametrize(
    ("group", "l4t_release", "base"),
    [
        ("rpi", None, "python:3.11-slim-bookworm"),
        ("jetson", "r35.4.1", "nvcr.io/nvidia/l4t-base:r35.4.1"),
        ("jetson", "r36.4.0", "nvcr.io/nvidia/l4t-jetpack:r36.4.0"),
    ],
)
def test_render_only_dockerfile_of_the_profile_uses_the_right_base(
    group: str, l4t_release: str | None, base: str, tmp_path: Path
) -> None:
    build_dir = tmp_path / "context"
    extra = {
        "ansible_architecture": "aarch64",
        "predictor_image_build": False,
        "predictor_image_build_dir": str(build_dir),
        "predictor_image_revision": REVISION,
    }
    if l4t_release:
        extra["jetson_runtime_l4t_release"] = l4t_release
    inventory = write_inventory(tmp_path, group)
    output = succeeded(
        ansible("-i", str(inventory), PLAYBOOK, "-e", json.dumps(extra), timeout=600)
    )
    assert recap(output)["failed"] == 0
    dockerfile = build_dir / "Dockerfile"
    assert from_lines(dockerfile) == [f"FROM {base} AS build", f"FROM {base}"]
    text = dockerfile.read_text()
    assert '"/build/app[litert]"' in text
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["/opt/edgecast/bin/edgecast"]' in text
    if group == "jetson":
        # A standalone CPython 3.11, checked by sha256, makes the virtual environment.
        assert re.search(r'echo "[0-9a-f]{64}  /build/python.tar.gz" \| sha256sum', text)
        assert "/opt/python/bin/python3 -m venv /opt/edgecast" in text
        assert "COPY --from=build /opt/python /opt/python" in text
    else:
        assert "RUN python3 -m venv /opt/edgecast" in text
        assert "/opt/python" not in text


def test_render_only_jetson_without_a_known_l4t_release_stops_before_any_change(
    tmp_path: Path,
) -> None:
    build_dir = tmp_path / "context"
    extra = {
        "ansible_architecture": "aarch64",
        "predictor_image_build": False,
        "predictor_image_build_dir": str(build_dir),
        # This machine has no /etc/nv_tegra_release: the release stays unknown.
        "jetson_runtime_nv_tegra_release_path": str(tmp_path / "nv_tegra_release"),
    }
    inventory = write_inventory(tmp_path, "jetson")
    result = ansible("-i", str(inventory), PLAYBOOK, "-e", json.dumps(extra), timeout=600)
    assert result.returncode != 0
    assert "L4T release of localhost is not known" in result.stdout, result.stdout[-3000:]
    assert not build_dir.exists()
