"""Hosts of the test fleet joined as nodes of the harness's Kubernetes (tests/infra/cluster).

Stand-in, named as such: k3s cannot be had on this machine, so an edge host of the fleet joins
the cluster the way a k3s agent would, with the harness's own binaries instead of k3s's embedded
ones, started as transient systemd units inside the host: the kubelet (upstream Kubernetes, the
harness's ``kube`` multi-call binary) and the container runtime it talks to, one of the two
k3s offers:

- ``docker`` (``k3s agent --docker``, the paper's arrangement): k3s's cri-dockerd in front of the
  Docker engine that the docker_engine role installed there;
- ``containerd`` (k3s's default): a containerd of its own with its CRI plugin on, at the
  socket, state and root folders k3s gives its embedded one, so that ``ctr --address`` on that
  socket is what ``k3s ctr`` is on a board. The daemon is Debian's containerd, which the
  docker.io package brought for Docker (Docker still builds the image there).

The control plane stays the harness's, on this machine; the host's kubelet reaches it at this
machine's address on the fleet's network.

Each joined node is a node of its own: its name, InternalIP and pod range (10.42.N.0/24, given
by the controller manager) are its own, its pods run in its own runtime (so a pod can only use
an image built on that node), on a bridge inside the host. This machine routes each node's
pod range to the host, so the API server, kube-proxy's Service rules here and the tests reach
pods on every node. Not run on the hosts: kube-proxy (Services are reached from this machine,
whose kube-proxy has the rules for every node's endpoints) and cluster DNS.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes.client.exceptions import ApiException

from .cluster import Cluster, wait_for
from .docker import docker
from .fleet import Fleet, Host

# Where the harness's binaries and the node's state go inside a host.
HARNESS_DIR = "/opt/edgecast-harness"
STATE = "/var/lib/edgecast-harness"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
API_PORT = 6443
# A name the API server's certificate holds, checked in place of the address the host dials.
API_SERVER_NAME = "kubernetes"
BRIDGE = "edgecast0"
# k3s's embedded containerd: its socket, state and root, as k3s lays them out on a node. Its
# root needs a file system overlayfs can stack on (a volume in the fleet's hosts).
CONTAINERD_SOCKET = "/run/k3s/containerd/containerd.sock"
CONTAINERD_STATE = "/run/k3s/containerd"
CONTAINERD_ROOT = "/var/lib/rancher/k3s/agent/containerd"
# What ``k3s ctr`` runs on a board, as argv.
K3S_CTR = ("ctr", "--address", CONTAINERD_SOCKET)
RUNTIMES = ("docker", "containerd")


@dataclass(frozen=True)
class JoinedNode:
    name: str
    address: str
    pod_cidr: str


def _sign(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    *,
    organization: str | None = None,
    server: bool = False,
    names: tuple[str, ...] = (),
    addresses: tuple[str, ...] = (),
) -> tuple[bytes, bytes]:
    """A leaf certificate and key (PEM) signed by the cluster's CA, as ``kube pki`` makes them."""
    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    now = datetime.datetime.now(datetime.UTC)
    usage = (
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        if server
        else (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), True
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), False)
    )
    if names or addresses:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), False)
    cert = builder.sign(ca_key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _kubelet_config(address: str, cgroup_driver: str, cgroup_root: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: kubelet.config.k8s.io/v1beta1
        kind: KubeletConfiguration
        address: {address}
        port: 10250
        readOnlyPort: 0
        healthzBindAddress: 127.0.0.1
        healthzPort: 10248
        authentication:
          anonymous: {{enabled: false}}
          webhook: {{enabled: true}}
          x509: {{clientCAFile: {STATE}/pki/ca.crt}}
        authorization: {{mode: Webhook}}
        tlsCertFile: {STATE}/pki/kubelet.crt
        tlsPrivateKeyFile: {STATE}/pki/kubelet.key
        cgroupDriver: {cgroup_driver}
        # The hosts share this machine's cgroup tree: each node's pods go under a root of its
        # own, never under the kubepods of this machine's node (whose kubelet would take them
        # for orphans).
        cgroupRoot: {cgroup_root}
        failCgroupV1: false
        oomScoreAdj: 0
        failSwapOn: false
        protectKernelDefaults: false
        imageGCHighThresholdPercent: 100
        imageGCLowThresholdPercent: 99
        evictionHard:
          memory.available: "0%"
          nodefs.available: "0%"
          nodefs.inodesFree: "0%"
          imagefs.available: "0%"
          imagefs.inodesFree: "0%"
        clusterDomain: cluster.local
        resolvConf: /etc/resolv.conf
        nodeStatusUpdateFrequency: 4s
        nodeStatusReportFrequency: 20s
        serializeImagePulls: false
        """)


def _containerd_config(cgroup_driver: str) -> str:
    """containerd with its CRI plugin for the kubelet, as k3s configures its embedded one."""
    systemd = "true" if cgroup_driver == "systemd" else "false"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return textwrap.dedent(f"""\
        version = 2
        root = "{CONTAINERD_ROOT}"
        state = "{CONTAINERD_STATE}"
        [grpc]
          address = "{CONTAINERD_SOCKET}"
        [{cri}]
          sandbox_image = "{PAUSE_IMAGE}"
          # Inside a container: no AppArmor profiles to load, no oom_score_adj below its own.
          disable_apparmor = true
          restrict_oom_score_adj = true
        [{cri}.containerd]
          snapshotter = "overlayfs"
          default_runtime_name = "runc"
        [{cri}.containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
        [{cri}.containerd.runtimes.runc.options]
          SystemdCgroup = {systemd}
        [{cri}.cni]
          bin_dir = "{HARNESS_DIR}/cni"
          conf_dir = "{STATE}/cni/net.d"
        """)


def _cni_config(pod_cidr: str) -> str:
    network = ipaddress.ip_network(pod_cidr)
    gateway = str(next(network.hosts()))
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "edgecast-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": pod_cidr, "gateway": gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": f"{STATE}/cni/ipam",
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall", "backend": "iptables"},
            ],
        },
        indent=2,
    )


def _unit(host: Host, name: str, *argv: str) -> None:
    """Starts ``argv`` in the host as a transient systemd unit (restarted if it dies)."""
    host.run(f"systemctl stop {name} 2>/dev/null; systemctl reset-failed {name} 2>/dev/null; true")
    command = " ".join(argv)
    host.run(
        f"systemd-run --unit {name} --property Restart=always --property RestartSec=2 "
        f"--property KillMode=process {command}"
    )


def _load(host: Host, argv: list[str], archive: bytes) -> None:
    loaded = subprocess.run(
        ["docker", "exec", "-i", host.container, *argv], input=archive,
        capture_output=True, check=False,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr.decode()[-2000:]


def _start_cri_dockerd(host: Host, pause: bytes) -> str:
    """cri-dockerd in front of the host's Docker engine; returns its CRI endpoint."""
    _load(host, ["docker", "load"], pause)
    _unit(
        host, "harness-docker-proxy", f"{HARNESS_DIR}/bin/kube", "docker-proxy",
        "--listen", f"{STATE}/run/docker.sock", "--upstream", "/var/run/docker.sock",
    )  # fmt: skip
    wait_for(f"{host.name}: the Docker API proxy", lambda: host.run(
        f"docker -H unix://{STATE}/run/docker.sock version --format ok", check=False
    ).strip() == "ok", timeout=30)  # fmt: skip
    _unit(
        host, "harness-cri-dockerd", f"{HARNESS_DIR}/bin/cri-dockerd",
        "--container-runtime-endpoint", f"unix://{STATE}/run/cri-dockerd.sock",
        "--docker-endpoint", f"unix://{STATE}/run/docker.sock",
        "--cri-dockerd-root-directory", f"{STATE}/cri-dockerd",
        "--pod-infra-container-image", PAUSE_IMAGE,
        "--network-plugin", "cni", "--cni-bin-dir", f"{HARNESS_DIR}/cni",
        "--cni-conf-dir", f"{STATE}/cni/net.d", "--cni-cache-dir", f"{STATE}/cni/cache",
        "--streaming-bind-addr", "127.0.0.1:10010",
    )  # fmt: skip
    wait_for(f"{host.name}: cri-dockerd", lambda: host.run(
        f"test -S {STATE}/run/cri-dockerd.sock && echo yes", check=False
    ).strip() == "yes", timeout=60)  # fmt: skip
    return f"unix://{STATE}/run/cri-dockerd.sock"


def _start_containerd(host: Host, files: Path, cgroup_driver: str, pause: bytes) -> str:
    """A containerd of k3s's layout with its CRI plugin on; returns its CRI endpoint.

    The binary is Debian's containerd, there since the docker_engine role installed docker.io
    (which depends on it); this one runs apart from Docker's, on k3s's socket and folders.
    """
    (files / "containerd.toml").write_text(_containerd_config(cgroup_driver))
    docker("cp", str(files / "containerd.toml"), f"{host.container}:{STATE}/containerd.toml")
    host.run(f"mkdir -p {CONTAINERD_ROOT} {CONTAINERD_STATE}")
    _unit(host, "harness-containerd", "/usr/bin/containerd", "--config", f"{STATE}/containerd.toml")
    ctr = " ".join(K3S_CTR)
    wait_for(f"{host.name}: containerd", lambda: host.run(
        f"{ctr} version >/dev/null && echo yes", check=False
    ).strip() == "yes", timeout=60)  # fmt: skip
    _load(host, [*K3S_CTR, "--namespace", "k8s.io", "images", "import", "-"], pause)
    return f"unix://{CONTAINERD_SOCKET}"


def _gateway(fleet: Fleet) -> str:
    """This machine's address on the fleet's network, where the hosts reach the API server."""
    return docker(
        "network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", fleet.network
    ).stdout.strip()


def _kubeconfig(server: str, ca: bytes, cert: bytes, key: bytes, user: str) -> str:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "edgecast",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": b64(ca),
                        "tls-server-name": API_SERVER_NAME,
                    },
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate-data": b64(cert),
                                        "client-key-data": b64(key)}}
            ],
            "contexts": [{"name": "edgecast", "context": {"cluster": "edgecast", "user": user}}],
            "current-context": "edgecast",
        }
    )  # fmt: skip


def join(
    cluster: Cluster,
    fleet: Fleet,
    name: str,
    work: Path,
    runtime: str = "docker",
    timeout: float = 240,
) -> JoinedNode:
    """Joins the fleet host ``name`` (Docker already running there) to the cluster as a node
    whose pods run in ``runtime`` (one of RUNTIMES)."""
    assert runtime in RUNTIMES, runtime
    host = fleet[name]
    bin_dir = Path((cluster.state_dir / "run" / "bin-dir").read_text().strip())
    ca_pem = (cluster.pki / "ca.crt").read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    ca_key = serialization.load_pem_private_key((cluster.pki / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    client_cert, client_key = _sign(
        ca_cert, ca_key, f"system:node:{name}", organization="system:nodes"
    )
    serving_cert, serving_key = _sign(
        ca_cert, ca_key, name, server=True, names=(name,), addresses=(host.address,)
    )
    server = f"https://{_gateway(fleet)}:{API_PORT}"
    cgroup_driver = host.run("docker info --format '{{.CgroupDriver}}'").strip()
    cgroup_root = f"/edgecast-fleet-{name}"

    files = work / f"join-{name}"
    (files / "pki").mkdir(parents=True, exist_ok=True)
    (files / "pki" / "ca.crt").write_bytes(ca_pem)
    (files / "pki" / "kubelet.crt").write_bytes(serving_cert)
    (files / "pki" / "kubelet.key").write_bytes(serving_key)
    (files / "kubelet.kubeconfig").write_text(
        _kubeconfig(server, ca_pem, client_cert, client_key, f"system:node:{name}")
    )
    (files / "kubelet.yaml").write_text(_kubelet_config(host.address, cgroup_driver, cgroup_root))

    host.run(f"mkdir -p {HARNESS_DIR}/bin {STATE}/cni/net.d {STATE}/run {STATE}/kubelet")
    # cri-dockerd reads a pod's address with ip(8) inside the pod's namespace (k3s ships its own).
    host.run(
        "command -v ip >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -qq --no-install-recommends iproute2 >/dev/null)",
        timeout=600,
    )
    docker("cp", f"{files}/.", f"{host.container}:{STATE}/")
    for binary in ("kube", "cri-dockerd"):
        docker("cp", str(bin_dir / binary), f"{host.container}:{HARNESS_DIR}/bin/{binary}")
    docker("cp", "/usr/lib/cni", f"{host.container}:{HARNESS_DIR}/cni")
    host.run(
        f"chmod 0600 {STATE}/pki/kubelet.key {STATE}/kubelet.kubeconfig && "
        f"ln -sf kube {HARNESS_DIR}/bin/kubelet"
    )
    # The pause image, from this machine's engine (no registry).
    pause = subprocess.run(["docker", "save", PAUSE_IMAGE], capture_output=True, check=True)
    if runtime == "containerd":
        endpoint = _start_containerd(host, files, cgroup_driver, pause.stdout)
    else:
        endpoint = _start_cri_dockerd(host, pause.stdout)
    # The kubelet's OOM watcher will not start without /dev/kmsg, which a container lacks (and
    # may not read: CAP_SYSLOG). It reads an empty log instead: OOM kills of pods on these
    # nodes are not reported as events.
    host.run(
        "[ -e /dev/kmsg ] || touch /dev/kmsg; "
        "mountpoint -q /dev/kmsg || mount --bind /dev/null /dev/kmsg"
    )
    # The pods' cgroup root, in every v1 hierarchy (cpuset's needs its parent's CPUs and nodes).
    host.run(
        "for c in /sys/fs/cgroup/*/; do case $c in */unified/) continue;; esac; "
        f"mkdir -p $c{cgroup_root}; done; "
        f"d=/sys/fs/cgroup/cpuset{cgroup_root}; "
        "cat /sys/fs/cgroup/cpuset/cpuset.cpus > $d/cpuset.cpus; "
        "cat /sys/fs/cgroup/cpuset/cpuset.mems > $d/cpuset.mems"
    )

    _unit(
        host, "harness-kubelet", f"{HARNESS_DIR}/bin/kubelet",
        "--config", f"{STATE}/kubelet.yaml", "--kubeconfig", f"{STATE}/kubelet.kubeconfig",
        "--container-runtime-endpoint", endpoint,
        "--root-dir", f"{STATE}/kubelet", "--cert-dir", f"{STATE}/kubelet/pki",
        "--hostname-override", name, "--node-ip", host.address,
    )  # fmt: skip

    core = cluster.core()

    def registered() -> str | None:
        return core.read_node(name).spec.pod_cidr or None

    def logs() -> str:
        return host.run("journalctl -u harness-kubelet --no-pager | tail -30", check=False)

    pod_cidr = wait_for(f"{name} to register", registered, timeout=timeout, details=logs)
    # The node's pod range, for the CNI plugins in the host (the runtime reads the folder) and
    # as a route on this machine.
    config = f"{STATE}/cni/net.d/10-edgecast.conflist"
    host.run(f"cat > {config} <<'EOF'\n{_cni_config(pod_cidr)}\nEOF")
    subprocess.run(["ip", "route", "replace", pod_cidr, "via", host.address], check=True)
    # Connections from outside the host to its pods are forwarded (Docker's FORWARD policy is
    # DROP, and the CNI firewall plugin lets only replies in), as flannel does on a k3s node.
    host.run(
        f"iptables -C FORWARD -d {pod_cidr} -j ACCEPT 2>/dev/null || "
        f"iptables -I FORWARD -d {pod_cidr} -j ACCEPT; "
        f"iptables -C FORWARD -s {pod_cidr} -j ACCEPT 2>/dev/null || "
        f"iptables -I FORWARD -s {pod_cidr} -j ACCEPT"
    )

    def ready() -> bool:
        conditions = core.read_node(name).status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    wait_for(f"{name} to be Ready", ready, timeout=timeout, details=logs)
    return JoinedNode(name, host.address, pod_cidr)


def leave(cluster: Cluster, fleet: Fleet, name: str) -> None:
    """Takes a node out, joined or half-joined: its harness units and pod containers stopped,
    its Node object and this machine's route to its pods removed, and its cgroup root."""
    host = fleet[name]
    root = f"edgecast-fleet-{name}"
    host.run(
        "systemctl stop harness-kubelet harness-cri-dockerd harness-docker-proxy; "
        "ids=$(docker ps -aq --filter label=io.kubernetes.pod.namespace); "
        '[ -z "$ids" ] || docker rm --force $ids >/dev/null; '
        # containerd's pods: their processes (by the node's cgroup root), shims and daemon.
        f"find /sys/fs/cgroup/*/{root} -name cgroup.procs -exec cat {{}} + 2>/dev/null "
        "| sort -u | xargs -r kill -9; "
        f"systemctl stop harness-containerd; pkill -9 -f 'containerd-shim.*{CONTAINERD_SOCKET}'",
        check=False,
    )
    routes = subprocess.run(
        ["ip", "-o", "route", "show", "via", host.address], capture_output=True, text=True
    ).stdout.split("\n")
    for route in filter(None, routes):
        subprocess.run(["ip", "route", "del", route.split()[0]], check=False, capture_output=True)
    try:
        cluster.core().delete_node(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = subprocess.run(
            f"find /sys/fs/cgroup/*/{root} -depth -type d -exec rmdir {{}} + 2>/dev/null; "
            f"ls -d /sys/fs/cgroup/*/{root} 2>/dev/null",
            shell=True, capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if not left:
            return
        time.sleep(1)
