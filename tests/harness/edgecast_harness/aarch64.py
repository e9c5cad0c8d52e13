"""An aarch64 image with the edgecast package and both runtimes, for tests and benchmarks that
need TensorFlow's aarch64 numerics (the predictor image carries LiteRT only).

Built under emulation (binfmt_misc and qemu-aarch64) from the Debian bookworm arm64 root of
tests/infra/base-image.sh, with the project's pinned TensorFlow, Keras and LiteRT wheels for
aarch64. Its tag is a key of what made it (the pins, the package, the base image), so a warm run
builds nothing; a build keeps only the newest tag. The image holds the dependencies only: the
checkout's package is mounted at run time (``PYTHONPATH=/src``), so a change to the code builds
nothing either.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

from .cache import cache_root, content_key
from .docker import base_image, docker, docker_engine
from .images import HOST_CA_BUNDLE
from .paths import REPO

REPOSITORY = "local/edgecast-aarch64-runtimes"
# A Raspberry Pi 4's /proc/cpuinfo (Cortex-A72), standing in for the board's own: under
# qemu-user a container reads the x86 host's, and LiteRT's XNNPACK (through cpuinfo) crashes on
# that at its first interpreter. Mounted over /proc/cpuinfo in every emulated container.
CPUINFO = REPO / "tests" / "infra" / "aarch64" / "cpuinfo"
CPUINFO_MOUNT = ["--volume", f"{CPUINFO}:/proc/cpuinfo:ro"]

DOCKERFILE = """\
FROM {base}
COPY extra-ca.pem /build/extra-ca.pem
RUN python3 -m venv /opt/edgecast \\
    && /opt/edgecast/bin/python -c 'from pip._vendor import certifi; print(certifi.where())' \\
        | xargs -I{} cat {} /build/extra-ca.pem > /build/pip-ca.pem
ENV PIP_CERT=/build/pip-ca.pem
COPY constraints.txt /build/constraints.txt
COPY app/pyproject.toml /build/app/pyproject.toml
RUN /opt/edgecast/bin/pip install --no-cache-dir --disable-pip-version-check \\
        --constraint /build/constraints.txt "/build/app[keras,litert]"
ENV PATH=/opt/edgecast/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=/src
"""


def _context(directory: Path, base: str) -> None:
    (directory / "Dockerfile").write_text(DOCKERFILE.replace("{base}", base))
    shutil.copy(HOST_CA_BUNDLE, directory / "extra-ca.pem")
    pins = [
        line.strip()
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    ]
    (directory / "constraints.txt").write_text("\n".join(pins) + "\n")
    app = directory / "app"
    app.mkdir()
    shutil.copy(REPO / "app" / "pyproject.toml", app / "pyproject.toml")


def runtimes_image() -> str:
    """The image's reference, built first when no image of this content exists."""
    docker_engine()
    base = base_image("arm64")
    base_id = docker("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
    pins = [REPO / "requirements.txt", REPO / "app" / "pyproject.toml"]
    key = content_key(pins, base_id, DOCKERFILE)[:16]
    ref = f"{REPOSITORY}:{key}"
    if docker("image", "inspect", ref, check=False).returncode == 0:
        return ref
    lock_path = cache_root() / "aarch64-runtimes.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if docker("image", "inspect", ref, check=False).returncode == 0:
            return ref
        with tempfile.TemporaryDirectory(prefix="edgecast-aarch64-") as tmp:
            _context(Path(tmp), base)
            docker("build", "--platform", "linux/arm64", "--tag", ref, tmp, timeout=5400)
        for old in docker("image", "ls", "--format", "{{.Tag}}", REPOSITORY).stdout.split():
            if old != key:
                docker("image", "rm", f"{REPOSITORY}:{old}", check=False)
    return ref


def run_aarch64(ref: str, *args: str, volumes: dict[Path, str] | None = None, timeout: float = 900):
    """``docker run`` of the image on aarch64, without network, with the checkout's package."""
    mounts = [*CPUINFO_MOUNT, "--volume", f"{REPO / 'app' / 'edgecast'}:/src/edgecast:ro"]
    for host, inside in (volumes or {}).items():
        mounts += ["--volume", f"{host}:{inside}"]
    return docker(
        "run", "--rm", "--platform", "linux/arm64", "--network", "none", *mounts, ref, *args,
        timeout=timeout, check=False,
    )  # fmt: skip
