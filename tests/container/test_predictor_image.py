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
import re
import secrets
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests

from edgecast.deploy.manifests import PredictorSpec, render
from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.docker import AMD64_BASE_IMAGE as BASE_IMAGE
from edgecast_harness.docker import docker
from edgecast_harness.images import (
    BUILD_STAGE_LABEL,
    HOST_CA_BUNDLE,
    PLAYBOOK,
    REVISION,
    BuiltImage,
    local_edge_inventory,
)
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import PlaybookRun, run_playbook
from edgecast_harness.ports import free_port

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64",)
DIGEST_LABEL = "io.edgecast.context-digest"
SERVING_PINS = (
    "ai-edge-litert",
    "numpy",
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
    "pandas": importlib.util.find_spec("pandas") is not None,
    "build_dir": os.path.exists("/build"),
    "uid": os.getuid(),
    "usable_cpus": __import__("edgecast.predictor.threads").predictor.threads.usable_cpus(),
}}))
"""


def pinned_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def from_lines(dockerfile: Path) -> list[str]:
    return [line for line in dockerfile.read_text().splitlines() if line.startswith("FROM ")]


@pytest.fixture
def built_image(predictor_image: BuiltImage) -> BuiltImage:
    return predictor_image


def test_the_role_builds_the_image_from_the_build_context_only(built_image: BuiltImage) -> None:
    assert built_image.first_run.changed("localhost") >= 2, built_image.first_run.tail()
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
    again = built_image.run_role()
    assert again.changed("localhost") == 0, again.tail()
    checked = built_image.run_role("--check")
    assert checked.changed("localhost") == 0, checked.tail()
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
        "--cpus",  # a CPU limit, as a pod's: the predictor reads its cgroup quota
        "1",
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
        assert inside["pandas"] is False  # the predictor never reads the data archive
        assert inside["usable_cpus"] == 1  # --cpus 1, whatever the host has

        # SIGTERM as the kubelet sends it: the predictor drains and exits 0.
        docker("stop", "--time", "60", name, timeout=120)
        state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
        assert state["ExitCode"] == 0, docker("logs", name, check=False).stderr[-3000:]
    finally:
        docker("rm", "--force", name, check=False)


def test_a_code_change_rebuilds_and_removes_the_replaced_image(built_image: BuiltImage) -> None:
    old_id = docker("image", "inspect", "--format", "{{.Id}}", built_image.ref).stdout.strip()
    with (built_image.source_dir / "edgecast" / "store.py").open("a") as module:
        module.write("# changed\n")
    stray = built_image.build_dir / "app" / "edgecast" / "stray.py"
    stray.write_text("raise SystemExit('not part of the package')\n")

    started = time.monotonic()
    output = built_image.run_role()
    print(f"run after a code change (warm build): {time.monotonic() - started:.0f} s")
    assert output.changed("localhost") >= 3, output.tail()  # copied, stray removed, built
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


def test_a_base_image_changed_under_its_tag_rebuilds_the_image(tmp_path: Path) -> None:
    # As a patched python:3.11-slim-bookworm pulled onto the node: the same tag names another
    # image. Here two images of this machine's Debian base that differ by a label, in turn.
    token = secrets.token_hex(4)
    base = f"local/edgecast-test-base:{token}"
    ref = f"edgecast-predictor:test-base-{token}"
    bases: list[str] = []

    def tag_base(generation: str) -> None:
        folder = tmp_path / f"base-{generation}"
        folder.mkdir()
        (folder / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nLABEL io.edgecast.test-base-generation={generation}\n"
        )
        bases.append(docker("build", "--quiet", "--tag", base, str(folder)).stdout.strip())

    variables = {
        "predictor_image_tag": ref.split(":", 1)[1],
        "predictor_image_base_image": base,
        "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
        "predictor_image_source_dir": str(REPO / "app"),
        "predictor_image_build_dir": str(tmp_path / "context"),
        "predictor_image_revision": REVISION,
    }
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    inventory = local_edge_inventory(tmp_path)

    def run_role() -> PlaybookRun:
        return run_playbook(PLAYBOOK, "-i", str(inventory), "-e", f"@{tmp_path / 'vars.json'}")

    def built() -> tuple[str, dict[str, str]]:
        image = json.loads(docker("image", "inspect", ref).stdout)[0]
        return image["Id"], image["Config"]["Labels"]

    try:
        tag_base("1")
        run_role()
        first_id, first_labels = built()
        assert first_labels["io.edgecast.test-base-generation"] == "1"
        assert run_role().changed("localhost") == 0

        tag_base("2")
        # Check mode says a build is due, and never builds: the image stays as it is.
        checked = run_playbook(
            PLAYBOOK, "-i", str(inventory), "-e", f"@{tmp_path / 'vars.json'}", "--check"
        )
        assert checked.changed("localhost") == 1, checked.tail()
        said = " ".join(checked.stdout.split())
        assert "would be built: its build context or its base image changed" in said, said[-3000:]
        assert built()[0] == first_id
        rebuilt = run_role()
        assert rebuilt.changed("localhost") >= 1, rebuilt.tail()
        second_id, second_labels = built()
        assert second_id != first_id
        assert second_labels["io.edgecast.test-base-generation"] == "2"
        # The digest (the default tag's suffix) follows the base; the replaced image is gone.
        assert second_labels[DIGEST_LABEL] != first_labels[DIGEST_LABEL]
        assert docker("image", "inspect", first_id, check=False).returncode != 0
        assert run_role().changed("localhost") == 0
    finally:
        docker("image", "rm", "--force", ref, base, *bases, check=False)
        docker(
            "image", "prune", "--force", "--filter", f"label={BUILD_STAGE_LABEL}={ref}", check=False
        )


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


def render_only(tmp_path: Path, group: str, **extra: str) -> PlaybookRun:
    """Runs the role for an aarch64 node of ``group`` that only renders its build context."""
    variables = {
        "ansible_architecture": "aarch64",
        "predictor_image_build": False,
        "predictor_image_build_dir": str(tmp_path / "context"),
        "predictor_image_revision": REVISION,
        **extra,
    }
    inventory = local_edge_inventory(tmp_path, group)
    return run_playbook(
        PLAYBOOK, "-i", str(inventory), "-e", json.dumps(variables), check=False, timeout=600
    )


# (group, L4T release, the base the Dockerfile must name), one inventory host per case.
RENDER_CASES = {
    "rpi": ("rpi", None, "python:3.11-slim-bookworm"),
    # The default Jetson image is the rpi one: LiteRT on the CPU needs no L4T base.
    "jetson": ("jetson", "r32.4.3", "python:3.11-slim-bookworm"),
    # With predictor_image_jetson_base=l4t, the published base of the release's line or major.
    "l4t-r32-4-3": ("jetson-l4t", "r32.4.3", "nvcr.io/nvidia/l4t-base:r32.4.3"),
    "l4t-r32-5-1": ("jetson-l4t", "r32.5.1", "nvcr.io/nvidia/l4t-base:r32.5.0"),
    "l4t-r32-7-5": ("jetson-l4t", "r32.7.5", "nvcr.io/nvidia/l4t-base:r32.7.1"),
    "l4t-r35-4-1": ("jetson-l4t", "r35.4.1", "nvcr.io/nvidia/l4t-base:r35.4.1"),
    "l4t-r35-2-1": ("jetson-l4t", "r35.2.1", "nvcr.io/nvidia/l4t-base:r35.2.1"),
    "l4t-r36-4-3": ("jetson-l4t", "r36.4.3", "nvcr.io/nvidia/l4t-jetpack:r36.4.0"),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PlaybookRun]:
    """One render-only run of the role (no build) for every case, each an image for aarch64:
    each inventory host is this machine, with the case's group and L4T release and its own
    build folder. One run instead of one per case: the role's start-up is most of its time."""
    work = tmp_path_factory.mktemp("render-only")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts: dict[str, dict[str, object]] = {}
    groups: dict[str, dict[str, dict[str, object]]] = {"rpi": {}, "jetson": {}}
    for name, (group, l4t_release, _) in RENDER_CASES.items():
        host: dict[str, object] = {
            **local,
            "predictor_image_architecture": "aarch64",
            "predictor_image_build_dir": str(work / name / "context"),
        }
        if l4t_release:
            host["jetson_runtime_l4t_release"] = l4t_release
        if group == "jetson-l4t":
            group, host["predictor_image_jetson_base"] = "jetson", "l4t"
        hosts[name] = host
        groups[group].setdefault("hosts", {})[name] = {}
    inventory = work / "inventory.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "children": {"edge": {"hosts": hosts, "children": groups}},
                    "vars": {"edgecast_deployment": "k3s", "k3s_container_runtime": "docker"},
                }
            }
        )
    )
    variables = {"predictor_image_build": False, "predictor_image_revision": REVISION}
    output = run_playbook(
        PLAYBOOK, "-i", str(inventory), "-e", json.dumps(variables), check=False, timeout=600
    )
    return work, output


@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_render_only_dockerfile_of_the_profile_uses_the_right_base(
    case: str, rendered: tuple[Path, PlaybookRun]
) -> None:
    work, output = rendered
    group, _, base = RENDER_CASES[case]
    assert output.recap(case)["failures"] == 0, output.tail()
    dockerfile = work / case / "context" / "Dockerfile"
    assert from_lines(dockerfile) == [f"FROM {base} AS build", f"FROM {base}"]
    text = dockerfile.read_text()
    assert '"/build/app[litert]"' in text
    assert "USER 10001:10001" in text
    assert 'ENTRYPOINT ["/opt/edgecast/bin/edgecast"]' in text
    on_l4t = group == "jetson-l4t"
    assert f'io.edgecast.profile="{"jetson" if on_l4t else group}"' in text
    if on_l4t:
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
    # This machine has no /etc/nv_tegra_release: the release stays unknown.
    result = render_only(
        tmp_path,
        "jetson",
        predictor_image_jetson_base="l4t",
        jetson_runtime_nv_tegra_release_path=str(tmp_path / "nv_tegra_release"),
    )
    assert result.rc != 0
    assert "L4T release of localhost is not known" in result.stdout, result.stdout[-3000:]
    assert not build_dir.exists()


# A fake docker CLI, named as such: it stands in for a node whose registry answers that a tag
# does not exist (no registry can be reached from this machine).
FAKE_DOCKER = """#!/bin/sh
case "$1 $2" in
  "version "*) echo 20.10.24 ;;
  "image inspect") echo "Error: No such image" >&2; exit 1 ;;
  "manifest inspect") echo "no such manifest: $3" >&2; exit 1 ;;
  *) echo "fake docker: unexpected $*" >&2; exit 3 ;;
esac
"""


def test_a_base_tag_the_registry_lacks_stops_before_the_build(tmp_path: Path) -> None:
    fake = tmp_path / "fake-docker"
    fake.write_text(FAKE_DOCKER)
    fake.chmod(0o755)
    variables = {
        "ansible_architecture": "aarch64",
        "predictor_image_docker": str(fake),
        "predictor_image_jetson_base": "l4t",
        "predictor_image_l4t_release": "r32.5.1",
        # A tag NGC never published (there is no l4t-base:r32.5.1).
        "predictor_image_l4t_images": {"r32": "nvcr.io/nvidia/l4t-base:r32.5.1"},
        "predictor_image_build_dir": str(tmp_path / "context"),
        "predictor_image_revision": REVISION,
    }
    inventory = local_edge_inventory(tmp_path, "jetson")
    result = run_playbook(
        PLAYBOOK, "-i", str(inventory), "-e", json.dumps(variables), check=False, timeout=600
    )
    assert result.rc != 0
    text = " ".join(result.stdout.split())
    assert "The base image nvcr.io/nvidia/l4t-base:r32.5.1 does not exist in its registry" in text
    assert "predictor_image_l4t_images" in text
    assert "fake docker: unexpected" not in result.stdout  # no build was tried
