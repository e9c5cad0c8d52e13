"""The containerd path: a node whose k3s runs its own containerd (k3s's default) instead of Docker.

k3s's containerd cannot be had here, so the runtime is Debian's containerd, the same daemon k3s
embeds, started for this module with its own root, state and socket (its CRI plugin off: no
kubelet talks to it). The predictor_image role builds with Docker as on every node, then copies
the image into containerd's k8s.io namespace, where a kubelet with imagePullPolicy Never looks;
predictor_deploy's pre-flight check asks that runtime for the image before anything changes.
The image is built from the same source as the one this test run built (the predictor_image
fixture), from Docker's cache, under the role's default tag, in a build context of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecast_harness.docker import docker
from edgecast_harness.images import PLAYBOOK, BuiltImage, local_edge_inventory
from edgecast_harness.playbook import PlaybookRun, run_playbook, write_play

CONFIG = """version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{root}/containerd.sock"
"""


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A real containerd daemon; yields the ctr argv that talks to it."""
    if not (shutil.which("containerd") and shutil.which("ctr")):
        # Debian's containerd, which docker.io brings too; the host's apt is shared (flock).
        install = (
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd"
        )
        subprocess.run(
            ["flock", "/var/lock/edgecast-apt.lock", "sh", "-c", install], check=True, timeout=900
        )
    containerd_bin = shutil.which("containerd")
    assert containerd_bin and shutil.which("ctr")
    root = tmp_path_factory.mktemp("containerd")
    (root / "config.toml").write_text(CONFIG.format(root=root))
    log = (root / "containerd.log").open("w")
    daemon = subprocess.Popen(
        [containerd_bin, "--config", str(root / "config.toml")], stdout=log, stderr=log
    )
    ctr = ["ctr", "--address", str(root / "containerd.sock")]
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            assert daemon.poll() is None, (root / "containerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "containerd did not answer within 60 s"
            time.sleep(0.2)
        yield ctr
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(root / "state")], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def listed(ctr: list[str]) -> list[str]:
    out = subprocess.run(
        [*ctr, "--namespace", "k8s.io", "images", "list", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def config_digest(ctr: list[str], name: str) -> str:
    """The image's config digest in containerd: Docker's image ID for the same image."""
    (line,) = [
        row
        for row in subprocess.run(
            [*ctr, "--namespace", "k8s.io", "images", "list"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        if row.startswith(name + " ")
    ]
    manifest = line.split()[2]
    content = subprocess.run(
        [*ctr, "--namespace", "k8s.io", "content", "get", manifest],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(content)["config"]["digest"])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("containerd-image")


def build_for_containerd(work: Path, image: BuiltImage, ctr: list[str], *args: str) -> PlaybookRun:
    variables = {
        "k3s_container_runtime": "containerd",
        "predictor_image_ctr": ctr,
        "predictor_image_source_dir": str(image.source_dir),
        # Its own build context: the shared image's is left as its tests expect it.
        "predictor_image_build_dir": str(work / "context"),
        "predictor_image_tag": "",  # the role's default tag, which carries the build context
    }
    inventory = local_edge_inventory(work)
    # The harness's image settings (base image, CA bundle, revision), then this module's.
    return run_playbook(
        PLAYBOOK, "-i", str(inventory), "-e", image.extra_vars, "-e", json.dumps(variables),
        *args, check=False, timeout=1200,
    )  # fmt: skip


@pytest.fixture(scope="module")
def imported(work: Path, predictor_image: BuiltImage, containerd: list[str]) -> PlaybookRun:
    return build_for_containerd(work, predictor_image, containerd).assert_ok()


def published_ref(run: PlaybookRun) -> str:
    (result,) = run.results("Publish the image reference of this build context", "localhost")
    return str(result["ansible_facts"]["predictor_image_ref"])


def test_the_image_docker_built_is_copied_into_containerd(
    imported: PlaybookRun, containerd: list[str]
) -> None:
    ref = published_ref(imported)
    assert ref.startswith("edgecast-predictor:") and ref.count("-") >= 3, ref
    # Docker's short name is the one a kubelet resolves through CRI.
    assert f"docker.io/library/{ref}" in listed(containerd)
    image_id = docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert config_digest(containerd, f"docker.io/library/{ref}") == image_id
    (copied,) = imported.results("Copy the image into containerd", "localhost")
    assert copied["changed"], imported.tail()


def test_a_second_run_copies_nothing_and_a_removed_image_again(
    work: Path, predictor_image: BuiltImage, containerd: list[str], imported: PlaybookRun
) -> None:
    again = build_for_containerd(work, predictor_image, containerd).assert_ok()
    assert again.changed("localhost") == 0, again.changed_tasks()

    name = f"docker.io/library/{published_ref(imported)}"
    subprocess.run([*containerd, "--namespace", "k8s.io", "images", "rm", name], check=True)
    assert name not in listed(containerd)
    restored = build_for_containerd(work, predictor_image, containerd).assert_ok()
    assert restored.changed_tasks("localhost") == ["localhost: Copy the image into containerd"]
    assert name in listed(containerd)


def check_image(work: Path, runtime: str, image: str, ctr: list[str], *args: str) -> PlaybookRun:
    """predictor_deploy's pre-flight check alone (the rest of the role needs a cluster)."""
    play = write_play(
        work / f"check-{runtime}.yml",
        "edge",
        [
            {
                "name": "Check the node's runtime has the image",
                "ansible.builtin.include_role": {"name": "predictor_deploy", "tasks_from": "image"},
            }
        ],
    )
    variables = {
        "k3s_container_runtime": runtime,
        "predictor_deploy_image": image,
        "predictor_deploy_ctr": ctr,
    }
    inventory = local_edge_inventory(work)
    return run_playbook(
        play, "-i", str(inventory), "-e", json.dumps(variables), *args, check=False, timeout=300
    )


@pytest.mark.parametrize("runtime", ["containerd", "docker"])
def test_the_deploy_checks_the_runtime_has_the_image(
    work: Path, containerd: list[str], imported: PlaybookRun, runtime: str
) -> None:
    ref = published_ref(imported)
    assert check_image(work, runtime, ref, containerd).rc == 0

    missing = check_image(work, runtime, "edgecast-predictor:not-built", containerd)
    assert missing.rc != 0
    assert f"{runtime} on localhost has no image edgecast-predictor:not-built" in missing.stdout
    assert "ErrImageNeverPull" in missing.stdout and "Nothing was changed" in missing.stdout
    # A first run in check mode has built nothing yet: it is not stopped.
    assert check_image(work, runtime, "edgecast-predictor:not-built", containerd, "--check").rc == 0


def test_containerd_that_does_not_answer_stops_the_role_before_any_change(
    work: Path, predictor_image: BuiltImage, imported: PlaybookRun
) -> None:
    down = ["ctr", "--address", str(work / "no-such.sock"), "--connect-timeout", "2s"]
    run = build_for_containerd(work, predictor_image, down)
    assert run.rc != 0
    assert "predictor_image_runtime is containerd" in run.stdout
    assert "playbooks/k3s.yml" in run.stdout and "Nothing was changed" in run.stdout
    assert run.changed() == 0, run.changed_tasks()
    assert not list(run.results("Compute the digest of the build context"))
