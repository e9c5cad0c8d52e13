"""The Helm chart on a real Kubernetes node (tests/infra/cluster), with Helm v3 built from its Go
module: the predictor_deploy role installs the chart (``predictor_deploy_method=helm``), the
predictor answers through its Service, a second run changes nothing, ``rollout-model.yml``
switches the chart-managed node to another model under load with no failed request, and a plain
``helm upgrade`` afterwards (and the deploy role again) keeps the switched model without
restarting its pod; the release then owns the switched model's Deployment.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.cluster import Cluster, edge_inventory, wait_for
from edgecast_harness.helm import CHART, helm, helm_binary
from edgecast_harness.images import REVISION, BuiltImage
from edgecast_harness.load_client import LoadProcess
from edgecast_harness.playbook import PlaybookRun, run_playbook

pytestmark = pytest.mark.cluster

BASE_IMAGES = ("amd64",)
APP_SELECTOR = "app.kubernetes.io/name=edgecast-predictor"
RELEASE = "edgecast"


@dataclass
class ChartNode:
    cluster: Cluster
    node: str
    namespace: str
    inventory: Path
    rollout_kubeconfig: Path
    deploy_args: tuple[str, ...]

    @property
    def service(self) -> str:
        return f"predictor-{self.node}"

    def url(self) -> str:
        ip = (
            self.cluster.core()
            .read_namespaced_service(self.service, self.namespace)
            .spec.cluster_ip
        )
        self.cluster.wait_proxied(ip, 8080)
        return f"http://{ip}:8080"

    def serving(self) -> str:
        return str(requests.get(f"{self.url()}/v1/model", timeout=10).json()["model_id"])

    def deployments(self) -> list:
        return (
            self.cluster.apps()
            .list_namespaced_deployment(self.namespace, label_selector=APP_SELECTOR)
            .items
        )

    def pods(self) -> dict[str, str]:
        """Pod uid -> model id of the node's predictor pods."""
        found = self.cluster.core().list_namespaced_pod(self.namespace, label_selector=APP_SELECTOR)
        return {p.metadata.uid: p.metadata.annotations["edgecast.io/model-id"] for p in found.items}

    def deploy(self, *args: str) -> PlaybookRun:
        return run_playbook(*self.deploy_args, *args, check=False, timeout=900)

    def helm(self, *args: str):
        return helm(*args, "--namespace", self.namespace, kubeconfig=self.cluster.kubeconfig)

    def release_manifest(self) -> list[dict]:
        text = self.helm("get", "manifest", RELEASE).stdout
        return [obj for obj in yaml.safe_load_all(text) if obj]


@pytest.fixture(scope="module")
def chart_node(
    kube_cluster: Cluster,
    tmp_path_factory: pytest.TempPathFactory,
    predictor_image: BuiltImage,
    trained_store: TrainedStore,
) -> Iterator[ChartNode]:
    (node,) = [n.metadata.name for n in kube_cluster.core().list_node().items]
    work = tmp_path_factory.mktemp("helm-cluster")
    suffix = secrets.token_hex(4)
    namespace = f"edgecast-helm-{suffix}"
    store = Path(f"/var/lib/edgecast-helm-{suffix}") / "models"
    inventory = work / "inventory.yml"
    inventory.write_text(json.dumps(edge_inventory(node, namespace, store, work, REVISION)))
    rollout_kubeconfig = work / "rollout.kubeconfig"
    first = trained_store.root / trained_store.model_ids[0]
    args = (
        "playbooks/deploy-predictor.yml",
        "-i",
        str(inventory),
        "-e",
        f"predictor_deploy_kubeconfig={kube_cluster.kubeconfig}",
        "-e",
        f"predictor_deploy_rollout_kubeconfig={rollout_kubeconfig}",
        "-e",
        f"predictor_deploy_bundle={first}",
        "-e",
        f"predictor_deploy_image={predictor_image.ref}",
        "-e",
        "predictor_deploy_method=helm",
        "-e",
        f"predictor_deploy_helm_binary={helm_binary()}",
        "-e",
        f"predictor_deploy_helm_release={RELEASE}",
    )
    chart_node = ChartNode(kube_cluster, node, namespace, inventory, rollout_kubeconfig, args)
    try:
        started = time.monotonic()
        result = chart_node.deploy()
        assert result.rc == 0, result.tail(8000) + kube_cluster.diagnostics()
        print(f"helm install through the deploy role: {time.monotonic() - started:.0f} s")
        yield chart_node
    finally:
        helm("uninstall", RELEASE, "--namespace", namespace, "--wait",
             kubeconfig=kube_cluster.kubeconfig, check=False)  # fmt: skip
        kube_cluster.delete_namespace(namespace)
        shutil.rmtree(store.parent, ignore_errors=True)


def test_the_chart_installed_by_the_role_serves_through_the_service(
    chart_node: ChartNode, trained_store: TrainedStore
) -> None:
    first = trained_store.model_ids[0]
    status = json.loads(chart_node.helm("status", RELEASE, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert chart_node.serving() == first
    answer = requests.post(f"{chart_node.url()}/v1/predict", json=window_from_data(), timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_id"] == first
    kinds = sorted(o["kind"] for o in chart_node.release_manifest())
    assert kinds == sorted(
        ["Deployment", "Service", "ServiceAccount", "ServiceAccount", "Role", "RoleBinding"]
    )
    (deployment,) = chart_node.deployments()
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
    assert chart_node.rollout_kubeconfig.is_file()


def test_a_second_run_of_the_role_changes_nothing(chart_node: ChartNode) -> None:
    pods = chart_node.pods()
    result = chart_node.deploy().assert_ok()
    assert result.changed(chart_node.node) == 0, result.tail(5000)
    assert chart_node.pods() == pods


def test_a_rollout_switches_the_chart_managed_node_and_helm_upgrade_keeps_it(
    chart_node: ChartNode, trained_store: TrainedStore, tmp_path: Path
) -> None:
    first, second = trained_store.model_ids
    with LoadProcess(chart_node.url(), tmp_path / "load.jsonl", duration=300).start() as load:
        result = run_playbook(
            "rollout-model.yml",
            "-i",
            str(chart_node.inventory),
            "-e",
            f"model_rollout_kubeconfig={chart_node.rollout_kubeconfig}",
            "-e",
            f"model_bundle={trained_store.root / second}",
            check=False,
            timeout=600,
        )
        assert result.rc == 0, result.tail(8000)
        # The playbook ends once the old pod is terminating; it finishes its exit under load.
        wait_for(
            "the old pod to finish its graceful exit",
            lambda: list(chart_node.pods().values()) == [second],
            timeout=90,
        )
    done, failed = load.records(), load.failed()
    assert not failed, f"{len(failed)} of {len(done)} requests failed: {failed[:5]}"
    assert chart_node.serving() == second
    (deployment,) = chart_node.deployments()
    # The switched model's Deployment carries Helm's ownership: the release may adopt it.
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"
    assert deployment.metadata.annotations["meta.helm.sh/release-name"] == RELEASE
    assert deployment.metadata.annotations["meta.helm.sh/release-namespace"] == chart_node.namespace
    pods = chart_node.pods()
    assert list(pods.values()) == [second]

    # A plain upgrade, as an operator runs it with the values the release has.
    upgraded = chart_node.helm("upgrade", RELEASE, str(CHART), "--reuse-values", "--wait")
    assert "has been upgraded" in upgraded.stdout, upgraded.stdout
    assert chart_node.serving() == second
    assert chart_node.pods() == pods, "helm upgrade restarted or replaced the predictor"
    owned = [o for o in chart_node.release_manifest() if o["kind"] == "Deployment"]
    assert [o["metadata"]["annotations"]["edgecast.io/model-id"] for o in owned] == [second]
    assert "--shadow-model-id" in owned[0]["spec"]["template"]["spec"]["containers"][0]["args"]

    # The deploy role again: it reports the rollout's model and keeps it.
    again = chart_node.deploy().assert_ok()
    text = " ".join(again.stdout.split())
    assert f"selects model {second}, set by a rollout, not the first bundle {first}" in text
    assert chart_node.serving() == second
    assert chart_node.pods() == pods
    print(f"\nhelm: rollout {first} -> {second}, {len(done)} requests, 0 failed; upgrade kept it")
