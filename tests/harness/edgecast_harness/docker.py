"""The local Docker engine as tests and benchmarks use it: started by tests/infra, driven by CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .cache import cache_root
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


def image_archive(image: str) -> Path:
    """``docker save`` of a local image, kept in the cache under the image's ID.

    Hosts of the test fleet have engines of their own and no registry to pull from: roles load
    their base images from such an archive, as an air-gapped site would.
    """
    image_id = docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
    folder = cache_root() / "image-archives"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"{image_id.removeprefix('sha256:')[:24]}.tar"
    if not archive.exists():
        partial = archive.with_suffix(".partial")
        docker("save", "--output", str(partial), image, timeout=600)
        partial.rename(archive)
    return archive
