"""A test fleet: separate hosts for Ansible, each a systemd container reached over real SSH.

Every host has its own hostname, filesystem, network address and init, an sshd, and the
unprivileged login user ``edgecast`` with passwordless sudo (tests/infra/fleet/node.Dockerfile),
as a freshly flashed board or a new cloud VM has. Ansible reaches them by their address on a
Docker network of their own with a key made for the run, and ``become`` for root, never through
a local or docker connection. Nothing is installed on them beforehand: the roles do that.

Hosts run as the systemd recipe of the Molecule scenarios (SYS_ADMIN, NET_ADMIN, the host's
cgroup tree), so that a Docker engine installed by the docker_engine role runs inside one.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .docker import base_image, docker, docker_engine, image_archive
from .images import REVISION
from .paths import HOST_CA_BUNDLE, REPO

NODE_IMAGE = "local/edgecast-fleet-node:bookworm"
NODE_DOCKERFILE = REPO / "tests" / "infra" / "fleet" / "node.Dockerfile"
USER = "edgecast"
SSH_OPTIONS = (
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
    "-o ConnectTimeout=10 -o ServerAliveInterval=15"
)


@dataclass(frozen=True)
class HostSpec:
    """One host: its inventory name (also its hostname) and the groups it belongs to."""

    name: str
    groups: tuple[str, ...]
    host_vars: dict[str, object] = field(default_factory=dict)
    # Extra ``docker run --volume`` mounts, e.g. a download cache shared with this machine.
    volumes: tuple[str, ...] = ()
    # Extra capabilities (``docker run --cap-add``), e.g. for a kubelet (fleet_kube.py).
    capabilities: tuple[str, ...] = ()


@dataclass
class Host:
    spec: HostSpec
    container: str
    address: str

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, script: str, check: bool = True, timeout: float = 300) -> str:
        """Runs ``script`` as root inside the host (for checks, not for provisioning)."""
        result = docker("exec", self.container, "sh", "-c", script, check=False, timeout=timeout)
        if check:
            assert result.returncode == 0, f"{self.name}: {script}: {result.stderr[-2000:]}"
        return result.stdout


@dataclass
class Fleet:
    """The running hosts, the key that logs in to them, and an inventory naming them."""

    network: str
    hosts: dict[str, Host]
    key: Path
    inventory: Path

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def ssh(self, name: str, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``command`` over SSH as the login user, the way Ansible reaches the host."""
        return subprocess.run(
            ["ssh", *SSH_OPTIONS.split(), "-i", str(self.key), "-o", "BatchMode=yes",
             f"{USER}@{self.hosts[name].address}", command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    def stop(self) -> None:
        for host in self.hosts.values():
            docker("rm", "--force", "--volumes", host.container, check=False, timeout=120)
        docker("network", "rm", self.network, check=False)


def node_image() -> str:
    """The fleet's host image, built from the systemd base image (Docker's cache keeps it)."""
    docker_engine()
    base_image("amd64", "systemd")
    with tempfile.TemporaryDirectory() as context:
        shutil.copy(NODE_DOCKERFILE, Path(context) / "Dockerfile")
        shutil.copy(HOST_CA_BUNDLE, Path(context) / "site-ca.pem")
        docker("build", "--quiet", "--tag", NODE_IMAGE, context, timeout=900)
    return NODE_IMAGE


def start_fleet(work: Path, specs: Iterable[HostSpec], group_vars: dict | None = None) -> Fleet:
    """Starts one host per spec on a new network and writes ``work/inventory.yml``."""
    image = node_image()
    suffix = secrets.token_hex(3)
    network = f"edgecast-fleet-{suffix}"
    docker("network", "create", network)
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fleet = Fleet(network, {}, key, work / "inventory.yml")
    try:
        for spec in specs:
            container = f"edgecast-fleet-{suffix}-{spec.name}"
            docker(
                "run", "--detach", "--name", container, "--hostname", spec.name,
                "--network", network, "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN",
                "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp:exec",
                "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--cgroupns", "host",
                *(f"--volume={volume}" for volume in spec.volumes),
                *(f"--cap-add={capability}" for capability in spec.capabilities),
                "--label", "io.edgecast.test=fleet", image, "/sbin/init",
            )  # fmt: skip
            address = docker(
                "inspect", "--format",
                f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', container,
            ).stdout.strip()  # fmt: skip
            fleet.hosts[spec.name] = Host(spec, container, address)
            authorized = f"/home/{USER}/.ssh/authorized_keys"
            docker("cp", f"{key}.pub", f"{container}:{authorized}")
            docker("exec", container, "chown", f"{USER}:{USER}", authorized)
        for host in fleet.hosts.values():
            wait_for_ssh(fleet, host.name)
        fleet.inventory.write_text(json.dumps(inventory(fleet, group_vars or {}), indent=2))
    except BaseException:
        fleet.stop()
        raise
    return fleet


def edge_image_vars(source: Path, base: str) -> dict[str, str]:
    """predictor_image's settings for the fleet's edge hosts: x86_64 stand-ins for the boards,
    so they build the amd64 profile (rpi and jetson build for aarch64 only), from ``source``,
    on the base image ``base`` loaded from an archive (no registry), as an air-gapped site does."""
    return {
        "predictor_image_profile": "amd64",
        "predictor_image_source_dir": str(source),
        "predictor_image_revision": REVISION,
        "predictor_image_base_image": base,
        "predictor_image_base_image_archive": str(image_archive(base)),
        "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
    }


STAND_IN_RUNTIME = """#!/bin/sh
# Stand-in for NVIDIA's nvidia-container-runtime (test only): log the call, then run runc.
echo "$*" >> /var/log/nvidia-container-runtime-stand-in.log
exec runc "$@"
"""
L4T_RELEASE = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n"


def jetpack_stand_in(fleet: Fleet, name: str) -> None:
    """What JetPack puts on a Jetson before edgecast's roles run, as stand-ins."""
    host = fleet[name]
    host.run(f"cat > /usr/bin/nvidia-container-runtime <<'EOF'\n{STAND_IN_RUNTIME}EOF")
    host.run("chmod 0755 /usr/bin/nvidia-container-runtime")
    host.run(f"printf '%s' '{L4T_RELEASE}' > /etc/nv_tegra_release")


def wait_for_ssh(fleet: Fleet, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = fleet.ssh(name, "sudo -n true && hostname", timeout=20)
        if result.returncode == 0 and result.stdout.strip() == name:
            return
        if time.monotonic() > deadline:
            logs = fleet.hosts[name].run("journalctl -u ssh --no-pager | tail -20", check=False)
            raise AssertionError(
                f"no SSH login to {name} after {timeout} s: {result.stderr}\n{logs}"
            )
        time.sleep(1)


def inventory(fleet: Fleet, group_vars: dict) -> dict:
    """An inventory of the fleet in the layout of inventory/fleet.example: hosts reached over
    SSH as the login user, root through sudo."""
    groups: dict[str, dict] = {}
    for host in fleet.hosts.values():
        for group in host.spec.groups:
            groups.setdefault(group, {"hosts": {}})["hosts"][host.name] = {}
    edge_children = {name: groups.pop(name) for name in ("rpi", "jetson") if name in groups}
    edge = groups.setdefault("edge", {"hosts": {}})
    edge["children"] = edge_children
    return {
        "all": {
            "hosts": {
                host.name: {
                    "ansible_host": host.address,
                    "ansible_user": USER,
                    "ansible_ssh_private_key_file": str(fleet.key),
                    "ansible_ssh_common_args": SSH_OPTIONS,
                    "ansible_become": True,
                    **host.spec.host_vars,
                }
                for host in fleet.hosts.values()
            },
            "children": groups,
            "vars": group_vars,
        }
    }
