"""The `rpi` predictor image for arm64, built by the predictor_image role with the template the
device uses, and served on aarch64 numerics under emulation.

The role runs against this x86 machine with ``predictor_image_architecture=aarch64``: it checks
that Docker runs the arm64 base image (binfmt_misc with qemu-aarch64, as
tests/infra/base-image.sh's Debian bookworm arm64 root), then ``docker build --platform
linux/arm64`` runs every step of the Dockerfile as aarch64 code, installing the real aarch64
wheels. The image is then run the way the Deployment runs it (uid 10001, read-only root, /tmp as
tmpfs, the store read-only at /models) with bundles trained on x86: it becomes ready only after
the parity gate passed on aarch64, and its forecast over HTTP matches the x86 forecast within the
bundle's tolerance. Emulated timings say nothing about a Raspberry Pi; the numerics are real
aarch64 numerics.

The image keeps a fixed tag and is not removed: it is this tier's cache. The role rebuilds it
only when its build context changes (the package's code, the Dockerfile, the pins), and Docker's
layer cache keeps the dependency layer, so a warm run builds nothing.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import requests

from edgecast.bundle import load_bundle_dir
from edgecast.deploy.manifests import PredictorSpec, render
from edgecast.forecaster import load_forecaster
from edgecast.predictor.validation import parse_predict_request
from edgecast_harness.aarch64 import CPUINFO_MOUNT
from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.docker import base_image, docker, docker_engine
from edgecast_harness.images import HOST_CA_BUNDLE, PLAYBOOK, REVISION, local_edge_inventory
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import PlaybookRun, run_playbook
from edgecast_harness.ports import free_port

pytestmark = pytest.mark.container

# The trimmed root, standing in for python:3.11-slim-bookworm, the rpi profile's default base.
BASE_IMAGES = ("arm64 slim",)
TAG = "test-arm64"
REF = f"edgecast-predictor:{TAG}"


@dataclass
class Arm64Image:
    ref: str
    inventory: Path
    extra_vars: str  # "@file" of the role's variables
    first_run: PlaybookRun
    seconds: float
    size_mb: float


@pytest.fixture(scope="module")
def arm64_image(tmp_path_factory: pytest.TempPathFactory) -> Arm64Image:
    docker_engine()
    base = base_image("arm64", "slim")
    work = tmp_path_factory.mktemp("arm64-image")
    extra = {
        "predictor_image_profile": "rpi",
        "predictor_image_architecture": "aarch64",
        "predictor_image_tag": TAG,
        "predictor_image_base_image": base,
        "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
        "predictor_image_source_dir": str(REPO / "app"),
        "predictor_image_build_dir": str(work / "context"),
        "predictor_image_revision": REVISION,
        "predictor_image_build_timeout": 3000,
    }
    path = work / "vars.json"
    path.write_text(json.dumps(extra))
    inventory = local_edge_inventory(work)
    started = time.monotonic()
    first = run_playbook(PLAYBOOK, "-i", str(inventory), "-e", f"@{path}", timeout=3600)
    seconds = time.monotonic() - started
    inspect = json.loads(docker("image", "inspect", REF).stdout)[0]
    size_mb = inspect["Size"] / 1e6
    base_mb = json.loads(docker("image", "inspect", base).stdout)[0]["Size"] / 1e6
    print(
        f"\narm64 rpi image {REF}: role run {seconds:.0f} s, {size_mb:.0f} MB "
        f"(base {base_mb:.0f} MB, the predictor's layers {size_mb - base_mb:.0f} MB)"
    )
    return Arm64Image(REF, inventory, f"@{path}", first, seconds, size_mb)


def words_on_aarch64(ref: str, entrypoint: str, script: str) -> list[str]:
    """What ``ENTRYPOINT -c SCRIPT`` prints in the image on aarch64, without network, as words."""
    return docker(
        "run", "--rm", "--platform", "linux/arm64", "--network", "none",
        "--entrypoint", entrypoint, ref, "-c", script, timeout=300,
    ).stdout.split()  # fmt: skip


def test_the_role_builds_the_rpi_image_for_arm64(arm64_image: Arm64Image) -> None:
    inspect = json.loads(docker("image", "inspect", arm64_image.ref).stdout)[0]
    assert inspect["Architecture"] == "arm64"
    labels = inspect["Config"]["Labels"]
    assert labels["io.edgecast.profile"] == "rpi"
    assert "io.edgecast.context-digest" in labels
    # The template's own checks ran inside the build (LiteRT loads, no TensorFlow); again here,
    # on aarch64, as the predictor's user.
    out = words_on_aarch64(
        arm64_image.ref, "sh",
        "uname -m; python -c 'import ai_edge_litert.interpreter, importlib.util as u; "
        "print(u.find_spec(\"tensorflow\") is None, u.find_spec(\"pip\") is None)'; id -u; "
        "edgecast --help >/dev/null && python -c 'import importlib.metadata as m; "
        "print(m.version(\"edgecast\"))'",
    )  # fmt: skip
    # No pip either: the environment reaches the runtime stage without it.
    assert out[:4] == ["aarch64", "True", "True", "10001"], out
    # The package came over from the build stage whole: its entry point and its metadata.
    assert out[4:] == [version("edgecast")], out


# The LiteRT image's size goal, on the stand-in base (trimmed as python:3.11-slim-bookworm is).
SIZE_GOAL_MB = 250


def test_the_litert_image_meets_its_size_goal_without_losing_what_it_runs(
    arm64_image: Arm64Image,
) -> None:
    assert arm64_image.size_mb <= SIZE_GOAL_MB, arm64_image.size_mb
    # What the build stage left behind (f2py, numpy's build helpers, type stubs) is gone, and
    # what the predictor runs still works on aarch64: numpy's linear algebra through OpenBLAS.
    out = words_on_aarch64(
        arm64_image.ref, "python",
        "import importlib.util as u, pathlib, numpy as np, numpy.linalg; "
        "site = pathlib.Path(np.__file__).parents[1]; "
        "print(u.find_spec('numpy.f2py') is None, u.find_spec('numpy.distutils') is None, "
        "next(site.rglob('*.pyi'), None) is None, "
        "bool(np.allclose(np.linalg.solve(np.diag([2.0, 4.0]), [1.0, 1.0]), [0.5, 0.25])))",
    )  # fmt: skip
    assert out == ["True", "True", "True", "True"], out


def test_an_unchanged_context_builds_nothing(arm64_image: Arm64Image) -> None:
    again = run_playbook(
        PLAYBOOK, "-i", str(arm64_image.inventory), "-e", arm64_image.extra_vars, timeout=900
    )
    assert again.changed("localhost") == 0, again.tail(4000)


def test_a_builder_that_cannot_run_the_architecture_stops_before_building(
    tmp_path: Path,
) -> None:
    # An arm64 build whose base image is an amd64 one: "uname -m" says x86_64, not aarch64.
    extra = {
        "predictor_image_profile": "rpi",
        "predictor_image_architecture": "aarch64",
        "predictor_image_tag": f"test-refused-{secrets.token_hex(4)}",
        "predictor_image_base_image": base_image("amd64"),
        "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
        "predictor_image_source_dir": str(REPO / "app"),
        "predictor_image_build_dir": str(tmp_path / "context"),
        "predictor_image_revision": REVISION,
    }
    path = tmp_path / "vars.json"
    path.write_text(json.dumps(extra))
    result = run_playbook(
        PLAYBOOK, "-i", str(local_edge_inventory(tmp_path)), "-e", f"@{path}", check=False
    )
    assert result.rc != 0
    text = " ".join(result.stdout.split())
    assert "cannot build for aarch64" in text, result.tail(4000)
    assert "binfmt_misc" in text
    tag = extra["predictor_image_tag"]
    assert docker("image", "inspect", f"edgecast-predictor:{tag}", check=False).returncode != 0


@pytest.fixture
def served(
    arm64_image: Arm64Image, trained_store: TrainedStore, tmp_path: Path
) -> Iterator[tuple[str, str, str]]:
    """The arm64 image run as the Deployment runs it, with a bundle trained on x86."""
    model_id = trained_store.model_ids[0]
    store = trained_store.copy_to(tmp_path / "store", model_id)
    for path in [store, *store.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    deployment = render(PredictorSpec(node="rpi", model_id=model_id, image=arm64_image.ref))
    pod = deployment["deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    port = free_port()
    name = f"edgecast-arm64-{secrets.token_hex(4)}"
    docker(
        "run", "--detach", "--name", name, "--platform", "linux/arm64",
        "--read-only", "--user", user, "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--tmpfs", f"{mounts['tmp']}:size=64m",
        *CPUINFO_MOUNT,  # the board's /proc/cpuinfo: emulation shows the x86 host's
        "--volume", f"{store}:{mounts['models']}:ro",
        "--publish", f"127.0.0.1:{port}:{container['ports'][0]['containerPort']}",
        arm64_image.ref, *container["args"],
    )  # fmt: skip
    try:
        yield name, f"http://127.0.0.1:{port}", model_id
    finally:
        docker("rm", "--force", name, check=False)


def test_served_on_aarch64_after_parity_and_matching_the_x86_forecast(
    served: tuple[str, str, str], trained_store: TrainedStore
) -> None:
    name, url, model_id = served
    started, answers = time.monotonic(), []
    while time.monotonic() - started < 300:
        try:
            answers.append(requests.get(f"{url}/readyz", timeout=10).status_code)
        except (requests.ConnectionError, requests.Timeout):
            answers.append(None)  # still starting: emulated code is slow
        if answers[-1] == 200:
            break
        assert docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true", (
            docker("logs", name, check=False).stderr[-3000:]
        )
        time.sleep(0.5)
    assert answers[-1] == 200, (answers[-5:], docker("logs", name, check=False).stderr[-3000:])
    model = requests.get(f"{url}/v1/model", timeout=10).json()
    assert model["model_id"] == model_id
    assert model["runtime"] == "litert"
    # The parity gate ran here, on aarch64: its figures are in the model's description.
    parity = model["parity"]
    assert parity["ok"] is True and parity["cases"] > 0, parity
    assert parity["max_abs_diff_kwh"] <= parity["allowed_kwh_at_worst"], parity

    body = window_from_data()
    answer = requests.post(f"{url}/v1/predict", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    edge = np.asarray(answer.json()["forecast_kwh"])

    bundle = load_bundle_dir(trained_store.root / model_id)
    forecaster, _ = load_forecaster(bundle, "keras")  # the cloud's own runtime, on x86
    request = parse_predict_request(body, bundle.config)
    cloud = forecaster.forecast(request.loads, request.last_timestamp, request.temperatures)
    allowed = bundle.tolerance.atol + bundle.tolerance.rtol * np.abs(cloud)
    diff = np.abs(edge - cloud)
    worst, bound = diff.max(), allowed.min()
    print(f"\naarch64 litert vs x86 keras: max |diff| {worst:.3g} kWh, allowed {bound:.3g}")
    assert (diff <= allowed).all(), (diff.max(), allowed.min())
