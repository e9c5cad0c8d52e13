"""The cluster harness (tests/infra/cluster) runs a real Kubernetes: proven end to end.

A Deployment of a locally built image (CPython alone, ``python3 -m http.server``, pulled from
nowhere: ``imagePullPolicy: Never``) becomes Available on the node, its Service gets
EndpointSlices naming the ready pods, and HTTP requests reach the pods through the Service two
ways: from this host to the ClusterIP (kube-proxy's iptables rules) and through the API server's
service proxy. Scaling the Deployment down updates the EndpointSlices. No skip: on a machine
where something of this cannot run, the test fails with the reason.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import requests
from kubernetes import client

from edgecast_harness.cluster import Cluster, python_http_image, wait_for
from edgecast_harness.paths import REPO

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64",)

K8S_VERSION = "v1.34.4"
APP = "http-echo"


@pytest.fixture(scope="module")
def namespace(kube_cluster: Cluster) -> Iterator[str]:
    core = kube_cluster.core()
    name = f"harness-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods need the namespace's default ServiceAccount, made by the controller manager.
    wait_for(
        f"the default ServiceAccount of {name}",
        lambda: core.read_namespaced_service_account("default", name),
        timeout=60,
    )
    yield name
    # Deleted in the background: the pods go, the cluster stays for the run's other tests.
    core.delete_namespace(name)


def test_node_is_ready_on_docker_with_pinned_versions(kube_cluster: Cluster) -> None:
    core = kube_cluster.core()
    version = client.VersionApi(kube_cluster.api_client()).get_code()
    assert version.git_version == K8S_VERSION, version
    nodes = core.list_node().items
    assert [node.metadata.name for node in nodes] == ["edgecast-node"]
    node = nodes[0]
    ready = {c.type: c.status for c in node.status.conditions}
    assert ready["Ready"] == "True", node.status.conditions
    info = node.status.node_info
    assert info.kubelet_version == K8S_VERSION
    assert info.kube_proxy_version in (K8S_VERSION, "")  # deprecated field, may be empty
    assert info.container_runtime_version.startswith("docker://"), info.container_runtime_version
    assert node.spec.pod_cidr == "10.42.0.0/24"
    # The control plane's own Service, served by the API server's endpoint reconciler.
    slices = kube_cluster.discovery().list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name=kubernetes"
    )
    assert any(s.endpoints for s in slices.items), slices


def _pinned(name: str) -> str:
    versions = REPO / "tests" / "infra" / "cluster" / "versions.env"
    lines = [line for line in versions.read_text().splitlines() if line.startswith(f"{name}=")]
    return lines[0].split("=", 1)[1]


def test_state_in_kine_over_sqlite_and_pods_through_k3s_cri_dockerd(
    kube_cluster: Cluster, namespace: str
) -> None:
    # As a single k3s server: the API server's objects are rows of kine's table in one SQLite
    # file, the namespace this module made among them (read here without kine or the API).
    if os.environ.get("EDGECAST_CLUSTER_DATASTORE", "kine") == "kine":
        db = kube_cluster.state_dir / "kine" / "state.db"
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute(
                "SELECT deleted FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1",
                (f"/registry/namespaces/{namespace}",),
            ).fetchall()
        assert rows == [(0,)], rows
    # The CRI shim the node's pods go through is k3s's fork, at the pinned version.
    binaries = Path((kube_cluster.state_dir / "run" / "bin-dir").read_text().strip())
    shown = subprocess.run(
        [binaries / "cri-dockerd", "--version"], capture_output=True, text=True, timeout=30
    )
    pinned = _pinned("CRI_DOCKERD_VERSION")
    assert "-k3s" in pinned, pinned  # the fork's own releases
    assert f"cri-dockerd {pinned.removeprefix('v')} " in shown.stdout + shown.stderr, shown


def _deployment(image: str, replicas: int) -> client.V1Deployment:
    labels = {"app": APP}
    container = client.V1Container(
        name="http",
        image=image,
        image_pull_policy="Never",
        args=["-m", "http.server", "8080", "--directory", "/srv"],
        ports=[client.V1ContainerPort(name="http", container_port=8080)],
        readiness_probe=client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/", port="http"),
            period_seconds=1,
        ),
        resources=client.V1ResourceRequirements(
            requests={"cpu": "10m", "memory": "32Mi"}, limits={"cpu": "200m", "memory": "64Mi"}
        ),
        volume_mounts=[client.V1VolumeMount(name="content", mount_path="/srv")],
        security_context=client.V1SecurityContext(run_as_user=65534, run_as_group=65534),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=APP, labels=labels),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[container],
                    termination_grace_period_seconds=2,
                    volumes=[
                        client.V1Volume(
                            name="content",
                            config_map=client.V1ConfigMapVolumeSource(name=f"{APP}-content"),
                        )
                    ],
                ),
            ),
        ),
    )


def _ready_endpoint_ips(cluster: Cluster, namespace: str) -> list[str]:
    slices = cluster.discovery().list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={APP}"
    )
    return sorted(
        address
        for s in slices.items
        for endpoint in s.endpoints or []
        if endpoint.conditions and endpoint.conditions.ready
        for address in endpoint.addresses
    )


def test_deployment_service_and_http_through_the_service(
    kube_cluster: Cluster, namespace: str
) -> None:
    core, apps = kube_cluster.core(), kube_cluster.apps()
    token = f"served by the cluster harness {uuid.uuid4().hex}\n"
    image = python_http_image()
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"{APP}-content"), data={"index.html": token}
        ),
    )
    apps.create_namespaced_deployment(namespace, _deployment(image, replicas=2))
    service = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=APP),
            spec=client.V1ServiceSpec(
                selector={"app": APP},
                ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
            ),
        ),
    )

    def pods_state() -> str:
        lines = []
        for pod in core.list_namespaced_pod(namespace).items:
            statuses = pod.status.container_statuses or []
            lines.append(f"{pod.metadata.name} {pod.status.phase} {[s.state for s in statuses]}")
        events = core.list_namespaced_event(namespace).items
        lines += [f"event {e.involved_object.name}: {e.reason} {e.message}" for e in events[-15:]]
        return "\n".join(lines) + "\n" + kube_cluster.diagnostics()

    def available() -> bool:
        status = apps.read_namespaced_deployment_status(APP, namespace).status
        return (status.available_replicas or 0) == 2

    wait_for("the Deployment to have 2 available pods", available, timeout=180, details=pods_state)
    pods = core.list_namespaced_pod(namespace, label_selector=f"app={APP}").items
    pod_ips = sorted(pod.status.pod_ip for pod in pods)
    assert all(ip.startswith("10.42.0.") for ip in pod_ips), pod_ips
    for pod in pods:
        assert pod.spec.node_name == "edgecast-node"
        assert pod.spec.containers[0].image_pull_policy == "Never"

    # The EndpointSlice controller publishes the two ready pods.
    wait_for(
        "EndpointSlices naming both pods",
        lambda: _ready_endpoint_ips(kube_cluster, namespace) == pod_ips,
        timeout=60,
        details=lambda: f"{_ready_endpoint_ips(kube_cluster, namespace)} != {pod_ips}",
    )

    # 1. From this host to the ClusterIP: kube-proxy's iptables rules send it to a pod.
    cluster_ip = service.spec.cluster_ip
    assert cluster_ip.startswith("10.43."), cluster_ip
    kube_cluster.wait_proxied(cluster_ip, 80)
    wait_for(
        "kube-proxy's rules to name both pods",
        lambda: (
            sorted(a.rsplit(":", 1)[0] for a in kube_cluster.proxied_endpoints(cluster_ip, 80))
            == pod_ips
        ),
        timeout=30,
    )

    def through_cluster_ip() -> requests.Response | None:
        response = requests.get(f"http://{cluster_ip}:80/index.html", timeout=3)
        return response if response.status_code == 200 else None

    response = wait_for(
        f"HTTP through ClusterIP {cluster_ip}",
        through_cluster_ip,
        timeout=60,
        details=lambda: kube_cluster.component_log("kube-proxy"),
    )
    assert response.text == token
    assert response.headers["Server"].startswith("SimpleHTTP/"), response.headers
    # Several requests: kube-proxy spreads them over both pods.
    for _ in range(20):
        assert requests.get(f"http://{cluster_ip}/index.html", timeout=3).text == token

    # 2. Through the API server's service proxy (API server -> pod IP on the pod bridge).
    proxy = f"/api/v1/namespaces/{namespace}/services/{APP}:http/proxy/index.html"
    url = kube_cluster.api_url + proxy
    response = requests.get(url, timeout=10, **kube_cluster.requests_auth())
    assert response.status_code == 200, response.text
    assert response.text == token

    # The pods are ordinary containers of this machine's Docker engine, named by cri-dockerd
    # as k3s --docker names them: k8s_POD_* (the pause sandbox) and k8s_<container>_*.
    names = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"label=io.kubernetes.pod.namespace={namespace}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len([n for n in names if n.startswith("k8s_POD_")]) == 2, names
    assert len([n for n in names if n.startswith("k8s_http_")]) == 2, names

    # The pods' logs come back through the kubelet (cri-dockerd's log files).
    served = 0
    for pod in pods:
        log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        served += log.count('"GET /index.html HTTP/1.1" 200')
    assert served >= 22, f"{served} requests logged by the pods"

    # Scaling down: the EndpointSlices follow.
    apps.patch_namespaced_deployment_scale(APP, namespace, {"spec": {"replicas": 1}})
    remaining = wait_for(
        "EndpointSlices with one pod",
        lambda: (ips := _ready_endpoint_ips(kube_cluster, namespace)) and len(ips) == 1 and ips,
        timeout=60,
    )
    assert remaining[0] in pod_ips
    assert requests.get(f"http://{cluster_ip}/index.html", timeout=3).text == token
