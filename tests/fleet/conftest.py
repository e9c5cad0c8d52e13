"""The fleet tier: separate hosts reached over SSH (edgecast_harness.fleet), shared by its tests.

The hosts are those of inventory/fleet.example's layout: a cloud host that trains, a Raspberry
Pi profile node and a Jetson profile node. They start bare (Debian with systemd, sshd and a
sudo user); whatever edgecast needs there, the playbooks install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecast_harness.fleet import Fleet, HostSpec, start_fleet

# pip's download cache of this machine, shared with the cloud host so that TensorFlow's wheels
# are downloaded once per machine rather than once per run.
PIP_CACHE = Path.home() / ".cache" / "pip"
# Docker's data root on a volume of its own, as on a board's disk: an engine inside a container
# cannot put overlay2 on the container's own overlay root (it would fall back to vfs, which
# copies every layer whole).
DOCKER_DATA = "/var/lib/docker"
# The same for the data of k3s's containerd (an edge node may join with it: fleet_kube.py).
K3S_DATA = "/var/lib/rancher"
# An edge node joins the test cluster with a kubelet and cri-dockerd running as root there, as
# k3s does on a board: the CNI plugins they run enter the network namespace of pods that run as
# uid 10001, which takes CAP_SYS_PTRACE (root on a board has it; a container does not).
KUBELET_CAPABILITIES = ("SYS_PTRACE",)

HOSTS = (
    HostSpec("cloud-1", ("cloud",), volumes=(f"{PIP_CACHE}:/root/.cache/pip",)),
    HostSpec(
        "pi-1",
        ("rpi", "k3s_server"),
        volumes=(DOCKER_DATA, K3S_DATA),
        capabilities=KUBELET_CAPABILITIES,
    ),
    HostSpec(
        "nano-1",
        ("jetson", "k3s_agent"),
        volumes=(DOCKER_DATA,),
        capabilities=KUBELET_CAPABILITIES,
    ),
)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    running = start_fleet(
        tmp_path_factory.mktemp("fleet"),
        HOSTS,
        group_vars={"edgecast_deployment": "k3s", "model_training_epochs": 3},
    )
    try:
        yield running
    finally:
        running.stop()
