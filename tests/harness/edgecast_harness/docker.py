"""The local Docker engine as tests and benchmarks use it: started by tests/infra, driven by CLI."""

from __future__ import annotations

import subprocess

from .paths import REPO

AMD64_BASE_IMAGE = "local/debian-amd64:bookworm"


def docker(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """``docker ARGS``; asserts success (with docker's own message) unless ``check`` is false."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr[-3000:]}"
    return result


def docker_engine() -> None:
    """A running Docker engine (installed and started by tests/infra/docker-engine.sh)."""
    subprocess.run(["bash", "tests/infra/docker-engine.sh"], cwd=REPO, check=True, timeout=600)


def base_image(arch: str, flavour: str = "", timeout: float = 1800) -> str:
    """Builds (or finds) local/debian-<arch>[-<flavour>]:bookworm; qemu runs foreign ones."""
    image = subprocess.run(
        ["bash", "tests/infra/base-image.sh", arch, *([flavour] if flavour else [])],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    ).stdout.split()[-1]
    expected = f"local/debian-{arch}{'-' + flavour if flavour else ''}:bookworm"
    assert image == expected, image
    return image
