"""A real single-node Kubernetes for tests: tests/infra/cluster/cluster.sh, shared per test run.

The ``kube_cluster`` fixture (tests/cluster/conftest.py) gives every test of the cluster tier
the same :class:`Cluster`::

    def test_something(kube_cluster: Cluster) -> None:
        core = kube_cluster.core()
        ...

The first test that asks for ``kube_cluster`` starts the cluster (building it first when the
cache is empty: tens of minutes on 2 cores; a warm start takes well under two minutes). Every
other test of the run, in any module, gets the same cluster; the run stops it at the end unless
it was already running before the run started or ``EDGECAST_CLUSTER_KEEP=1`` is set. The
admin kubeconfig is ``kube_cluster.kubeconfig`` (never ~/.kube/config).

Images: nothing can be pulled, so pods use images built on this machine with
``imagePullPolicy: Never``; :func:`python_http_image` makes a small one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from .paths import HOST_CA_BUNDLE, REPO

CLUSTER_SH = REPO / "tests" / "infra" / "cluster" / "cluster.sh"
STATE_DIR = Path(os.environ.get("EDGECAST_CLUSTER_DIR", "/var/lib/edgecast-cluster"))
# A cold build (empty cache) on a 2-core machine, plus the start itself.
START_TIMEOUT_S = 3600
BASE_IMAGE = "local/debian-amd64:bookworm"
HTTP_IMAGE = "local/edgecast-cluster-python-http:1"

T = TypeVar("T")


@dataclass
class Cluster:
    """The running cluster: its kubeconfig, state directory and API clients."""

    kubeconfig: Path
    state_dir: Path

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def api_url(self) -> str:
        return "https://127.0.0.1:6443"

    def api_client(self) -> client.ApiClient:
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client())

    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client())

    def discovery(self) -> client.DiscoveryV1Api:
        return client.DiscoveryV1Api(self.api_client())

    def requests_auth(self) -> dict[str, object]:
        """Keyword arguments for ``requests`` calls to the API server as the admin user."""
        return {
            "verify": str(self.pki / "ca.crt"),
            "cert": (str(self.pki / "admin.crt"), str(self.pki / "admin.key")),
        }

    def component_log(self, name: str, lines: int = 40) -> str:
        """The last lines of a component's log (kube-apiserver, kubelet, cri-dockerd, ...)."""
        path = self.state_dir / "logs" / f"{name}.log"
        if not path.exists():
            return f"(no {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def diagnostics(self) -> str:
        names = (
            "kubelet",
            "cri-dockerd",
            "kube-proxy",
            "kube-controller-manager",
            "kube-scheduler",
        )
        return "\n".join(f"--- {name} ---\n{self.component_log(name, 25)}" for name in names)

    def assert_routed_locally(self, ip: str) -> None:
        """Fails unless a packet to ``ip`` would stay on this machine (pod bridge or loopback).

        The harness routes the Service range to its pod bridge, so a ClusterIP never leaves the
        machine even before kube-proxy has a rule for it; this checks it before any request.
        """
        route = subprocess.run(
            ["ip", "-o", "route", "get", ip], capture_output=True, text=True, check=True
        ).stdout
        assert " dev edgecast0 " in route or " dev lo " in route, f"{ip} is not local: {route}"

    def delete_namespace(self, namespace: str, timeout: float = 120) -> None:
        """Deletes a namespace and waits (bounded) until it, and so its pods, are gone."""
        core = self.core()
        try:
            core.delete_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                core.read_namespace(namespace)
            except ApiException as exc:
                if exc.status == 404:
                    return
            time.sleep(1)

    def proxied_endpoints(self, ip: str, port: int) -> set[str]:
        """The pod addresses kube-proxy's iptables rules now send ``ip:port`` to."""
        rules = subprocess.run(
            ["iptables-save", "-t", "nat"], capture_output=True, text=True, check=True
        ).stdout
        service = re.search(
            rf"^-A KUBE-SERVICES -d {re.escape(ip)}/32 .*--dport {port} -j (KUBE-SVC-\w+)$",
            rules,
            re.MULTILINE,
        )
        if not service:
            return set()
        chains = re.findall(rf"^-A {service.group(1)} .*-j (KUBE-SEP-\w+)$", rules, re.MULTILINE)
        return {
            found.group(1)
            for chain in chains
            if (found := re.search(rf"^-A {chain} .*--to-destination (\S+)$", rules, re.MULTILINE))
        }

    def wait_proxied(self, ip: str, port: int, timeout: float = 60) -> set[str]:
        """Waits, without sending a packet, until kube-proxy forwards ``ip:port`` to a pod.

        A connection tried to a ClusterIP before kube-proxy has its rule leaves a conntrack
        entry without NAT (SYN_SENT, 120 s, renewed by every packet that matches it): a later
        connection that happens to reuse that source port goes to the bare ClusterIP and fails
        with "No route to host". Tests therefore send nothing to a new Service before this.
        """
        self.assert_routed_locally(ip)
        return wait_for(
            f"kube-proxy to forward {ip}:{port} to a pod",
            lambda: self.proxied_endpoints(ip, port) or None,
            timeout=timeout,
            interval=0.2,
        )


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.5,
    details: Callable[[], str] | None = None,
) -> T:
    """Calls ``probe`` until it returns something other than None/False; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value is not None and value is not False:
                return value
        except Exception as error:  # the API or the pod is not there yet: try again
            last_error = error
        time.sleep(interval)
    extra = details() if details else ""
    raise AssertionError(
        f"timed out after {timeout} s waiting for {what}; last error: {last_error}\n{extra}"
    )


def _run_cluster_sh(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "EDGECAST_CLUSTER_DIR": str(STATE_DIR)},
        stdin=subprocess.DEVNULL,
    )


class SharedCluster:
    """Starts the cluster once per process and stops it at the end if it started it."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.started_here = False

    def start(self) -> Cluster:
        if self.cluster is not None:
            return self.cluster
        running = _run_cluster_sh("status", timeout=120).returncode == 0
        result = _run_cluster_sh("start", timeout=START_TIMEOUT_S)
        assert result.returncode == 0, (
            f"cluster.sh start failed (exit {result.returncode}):\n"
            f"{result.stderr[-6000:]}\n{result.stdout[-2000:]}"
        )
        kubeconfig = Path(result.stdout.strip().splitlines()[-1])
        assert kubeconfig.is_file(), f"no kubeconfig at {kubeconfig}:\n{result.stderr[-3000:]}"
        self.started_here = not running
        self.cluster = Cluster(kubeconfig=kubeconfig, state_dir=STATE_DIR)
        return self.cluster

    def stop(self) -> None:
        if self.cluster is None or not self.started_here:
            return
        self.cluster = None
        if os.environ.get("EDGECAST_CLUSTER_KEEP") == "1":
            return
        result = _run_cluster_sh("stop", timeout=300)
        assert result.returncode == 0, f"cluster.sh stop failed:\n{result.stderr[-4000:]}"


def python_http_image(tag: str = HTTP_IMAGE) -> str:
    """A small image holding only CPython 3.11 and its standard library, for pods.

    Made by ``docker import`` of a root filesystem copied out of the Debian base image built by
    tests/infra/base-image.sh: the interpreter, its standard library and the shared libraries
    they load, nothing else (no shell, no package manager). Entry point: ``python3``.
    """
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    subprocess.run(
        ["bash", "tests/infra/base-image.sh", "amd64"], cwd=REPO, check=True, timeout=1200
    )
    collect = r"""
set -e
libs=$( { ldd /usr/bin/python3.11; for so in /usr/lib/python3.11/lib-dynload/*.so; do
  ldd "$so"; done; } | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
mkdir -p /rootfs/usr/bin /rootfs/tmp
cp /usr/bin/python3.11 /rootfs/usr/bin/python3.11
ln -s python3.11 /rootfs/usr/bin/python3
tar -ch --exclude=__pycache__ /usr/lib/python3.11 $libs 2>/dev/null | tar -x -C /rootfs
chmod 1777 /rootfs/tmp
tar -C /rootfs -c .
"""
    name = f"edgecast-cluster-rootfs-{os.getpid()}"
    run = ["docker", "run", "--rm", "--name", name, "--network", "none"]
    export = subprocess.run(
        [*run, BASE_IMAGE, "sh", "-c", collect],
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout
    subprocess.run(
        [
            "docker",
            "import",
            "--change",
            'ENTRYPOINT ["/usr/bin/python3"]',
            "--change",
            "LABEL org.edgecast.cluster=test-image",
            "-",
            tag,
        ],
        input=export,
        capture_output=True,
        check=True,
        timeout=300,
    )
    return tag


def edge_inventory(node: str, namespace: str, store: Path, work: Path, revision: str) -> dict:
    """An inventory that makes the cluster's node an edge host reached locally.

    The image, predictor-image, deploy and rollout playbooks run against it as they would
    against a k3s node: the image is built on the node from the Debian base image of
    tests/infra/base-image.sh (with this machine's CA bundle for pip), the store is a host
    folder that the pods mount. Which image the deploy role uses is its caller's choice.
    """
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_become": False,
    }
    return {
        "all": {
            "children": {"edge": {"hosts": {node: host}}},
            "vars": {
                "edgecast_deployment": "k3s",
                # The harness's kubelet runs its pods on this machine's Docker (cri-dockerd).
                "k3s_container_runtime": "docker",
                "edgecast_namespace": namespace,
                "predictor_deploy_namespace": namespace,
                "predictor_deploy_store": str(store),
                "predictor_image_base_image": BASE_IMAGE,
                "predictor_image_extra_ca_bundle": HOST_CA_BUNDLE,
                "predictor_image_build_dir": str(work / "context"),
                "predictor_image_revision": revision,
            },
        }
    }


_PHASES_RE = re.compile(r"phases \(s\): (\{[^}]*\})")
_PHASE_RE = re.compile(r"(\w+)'*:\s+([0-9.]+)")


def phases_of(output: str) -> dict[str, float]:
    """The phase times of a pod-switch rollout's report line (a dict, as the callback quotes it)."""
    match = _PHASES_RE.search(output)
    assert match, f"no phase times in the output:\n{output[-3000:]}"
    phases = {key: float(value) for key, value in _PHASE_RE.findall(match.group(1))}
    assert phases, match.group(0)
    return phases
