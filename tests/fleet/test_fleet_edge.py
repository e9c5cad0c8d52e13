"""The edge plays on real remote hosts: Docker and the predictor image on each node, over SSH.

`playbooks/provision-edge.yml` installs Docker Engine on both edge nodes (the paper's k3s
`--docker` arrangement) and makes the Jetson node's default runtime nvidia; then
`playbooks/predictor-image.yml` builds the predictor image on each node in that node's own
engine, from a base image loaded from an archive (no registry), the way an air-gapped site
does. Each node ends up with its own image and nothing of the other's; a second run of both
plays changes nothing.

Stand-ins, named as such: both edge hosts are x86_64 containers, so they build the amd64
profile (the rpi and jetson profiles build for aarch64 only); the Jetson host has a stand-in
for JetPack's nvidia-container-runtime (it logs each call and runs runc) and L4T release file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecast_harness.docker import base_image
from edgecast_harness.fleet import Fleet, edge_image_vars, jetpack_stand_in
from edgecast_harness.images import copy_source
from edgecast_harness.playbook import PlaybookRun, run_playbook

BASE_IMAGES = ("amd64 systemd", "amd64")
EDGE = ("pi-1", "nano-1")


@pytest.fixture(scope="module")
def amd64_base() -> str:
    """The nodes' base image, made here (or found) before it is saved for them: on a fresh
    machine no other test may have imported it into this engine yet."""
    return base_image("amd64")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package source as this checkout has it, fixed for the module."""
    return copy_source(tmp_path_factory.mktemp("source"))


def play(fleet: Fleet, source: Path, base: str, playbook: str, *args: str) -> PlaybookRun:
    image_vars = {**edge_image_vars(source, base), "k3s_container_runtime": "docker"}
    return run_playbook(
        playbook, "-i", str(fleet.inventory), "--limit", ",".join(EDGE),
        "-e", json.dumps(image_vars), *args, timeout=2400,
    )  # fmt: skip


@pytest.fixture(scope="module")
def provisioned(fleet: Fleet, source: Path, amd64_base: str) -> tuple[PlaybookRun, PlaybookRun]:
    jetpack_stand_in(fleet, "nano-1")
    return (
        play(fleet, source, amd64_base, "playbooks/provision-edge.yml"),
        play(fleet, source, amd64_base, "playbooks/predictor-image.yml"),
    )


def sudo(fleet: Fleet, name: str, command: str) -> str:
    result = fleet.ssh(name, f"sudo -n {command}", timeout=300)
    assert result.returncode == 0, f"{name}: {command}: {result.stderr[-2000:]}"
    return result.stdout


def test_each_node_runs_its_own_docker_engine(
    fleet: Fleet, provisioned: tuple[PlaybookRun, PlaybookRun]
) -> None:
    provision, _ = provisioned
    for name in EDGE:
        assert provision.changed(name) >= 1, provision.tail()
        info = json.loads(sudo(fleet, name, "docker info --format '{{json .}}'"))
        assert info["Name"] == name  # the engine inside that host, not this machine's
    runtimes = json.loads(sudo(fleet, "nano-1", "cat /etc/docker/daemon.json"))
    assert runtimes["default-runtime"] == "nvidia"
    assert "nvidia" not in sudo(fleet, "pi-1", "docker info --format '{{json .Runtimes}}'")


def test_each_node_builds_its_image_in_its_own_engine(
    fleet: Fleet, provisioned: tuple[PlaybookRun, PlaybookRun]
) -> None:
    _, built = provisioned
    refs = {}
    for name in EDGE:
        assert built.changed(name) >= 2, built.tail()
        listed = sudo(fleet, name, "docker image ls --format '{{.Repository}}:{{.Tag}}'").split()
        # One image, tagged <version>-<arch> and <version>-<arch>-<its build context's digest>.
        alias, ref = sorted(image for image in listed if image.startswith("edgecast-predictor:"))
        (published,) = built.results("Publish the image reference of this build context", name)
        assert published["ansible_facts"]["predictor_image_ref"] == ref
        digest = sudo(
            fleet, name, f"docker image inspect --format '{{{{json .Config.Labels}}}}' {alias}"
        )
        assert ref == f"{alias}-{json.loads(digest)['io.edgecast.context-digest'][:12]}"
        refs[name] = ref
        answer = sudo(
            fleet, name, f"docker run --rm --entrypoint /opt/edgecast/bin/edgecast {ref} --help"
        )
        assert "serve" in answer
    # The Jetson node ran it through its default runtime, the stand-in for nvidia's.
    assert (
        fleet["nano-1"].run("wc -l < /var/log/nvidia-container-runtime-stand-in.log").strip() != "0"
    )
    assert len(set(refs.values())) == 1, refs  # the same code and profile give the same tag


def test_a_second_and_a_checked_run_of_both_plays_change_nothing(
    fleet: Fleet, source: Path, amd64_base: str, provisioned: tuple[PlaybookRun, PlaybookRun]
) -> None:
    for playbook in ("playbooks/provision-edge.yml", "playbooks/predictor-image.yml"):
        again = play(fleet, source, amd64_base, playbook)
        assert again.changed() == 0, again.changed_tasks()
        checked = play(fleet, source, amd64_base, playbook, "--check")
        assert checked.changed() == 0, checked.changed_tasks()
