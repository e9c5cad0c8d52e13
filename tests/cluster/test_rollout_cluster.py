"""Deploy and roll out on a real Kubernetes node: the k3s path end to end, under steady load.

The cluster is the harness of tests/infra/cluster (a real API server, kubelet on this machine's
Docker engine, kube-proxy). The predictor image is built by the predictor_image role, the first
model deployed by `playbooks/deploy-predictor.yml`, and every rollout is `ansible-playbook
rollout-model.yml` with only the namespace-scoped rollout kubeconfig that the deploy role wrote,
while edgecast_harness.load_client sends requests to the node's Service ClusterIP from a
separate process. In order: the first deployment (a second run and ``--check`` change nothing),
the image the predictor_image role builds in the same run replacing the pod (its tag carries the
build context), a changed setting applied in place before any rollout, a rollout in check mode,
a pod switch to the second model that keeps the deployed spec, the deploy role re-run after it
(it keeps the rollout's model), a corrupted bundle refused before the cluster changes, a bundle
that fails the parity gate on the node (reverted), a rollback, and the deploy role re-run with a
store that keeps one bundle (the models in use stay).
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundle_faults import clone_bundle, flip_weights_byte, shift_reference_outputs
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.cluster import Cluster, edge_inventory, phases_of, wait_for
from edgecast_harness.docker import docker
from edgecast_harness.images import REVISION, BuiltImage
from edgecast_harness.load_client import LoadProcess
from edgecast_harness.paths import REPO
from edgecast_harness.playbook import PlaybookRun, run_playbook

# Debian base images (tests/infra/base-image.sh ARCH [FLAVOUR]) that conftest.py prepares
# in the background while earlier tests run.
BASE_IMAGES = ("amd64",)

APP_SELECTOR = "app.kubernetes.io/name=edgecast-predictor"


def playbook(*args: str, timeout: float = 1800) -> PlaybookRun:
    return run_playbook(*args, check=False, timeout=timeout)


def output_of(result: PlaybookRun) -> str:
    return result.tail(8000)


@dataclass
class Edge:
    """The node's inventory, namespace, store and Service, as the deploy role left them."""

    cluster: Cluster
    node: str
    namespace: str
    inventory: Path
    store: Path
    rollout_kubeconfig: Path
    image: str
    # The deploy role's command line; a test that changes a setting extends it.
    deploy_args: tuple[str, ...]
    phases: list[dict[str, float]] = field(default_factory=list)

    @property
    def service(self) -> str:
        return f"predictor-{self.node}"

    def cluster_ip(self) -> str:
        ip = (
            self.cluster.core()
            .read_namespaced_service(self.service, self.namespace)
            .spec.cluster_ip
        )
        self.cluster.wait_proxied(ip, 8080)
        return str(ip)

    def url(self) -> str:
        return f"http://{self.cluster_ip()}:8080"

    def predict(self) -> dict:
        response = requests.post(f"{self.url()}/v1/predict", json=window_from_data(), timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def serving(self) -> str:
        return str(requests.get(f"{self.url()}/v1/model", timeout=10).json()["model_id"])

    def deployments(self) -> dict[str, str]:
        """Name -> resourceVersion of the node's predictor Deployments."""
        found = self.cluster.apps().list_namespaced_deployment(
            self.namespace, label_selector=APP_SELECTOR
        )
        return {d.metadata.name: d.metadata.resource_version for d in found.items}

    def deployment_models(self) -> list[str]:
        found = self.cluster.apps().list_namespaced_deployment(
            self.namespace, label_selector=APP_SELECTOR
        )
        return sorted(d.metadata.annotations["edgecast.io/model-id"] for d in found.items)

    def pod_models(self) -> list[str]:
        pods = self.cluster.core().list_namespaced_pod(self.namespace, label_selector=APP_SELECTOR)
        return sorted(p.metadata.annotations["edgecast.io/model-id"] for p in pods.items)

    def running_pod_models(self) -> list[str]:
        """The models of the pods not terminating."""
        pods = self.cluster.core().list_namespaced_pod(self.namespace, label_selector=APP_SELECTOR)
        return sorted(
            p.metadata.annotations["edgecast.io/model-id"]
            for p in pods.items
            if not p.metadata.deletion_timestamp
        )

    def old_pods_leave(self, model_id: str) -> None:
        """A rollout ends once the old pod is terminating: ``model_id``'s alone are not; then
        the old ones finish their graceful exit."""
        assert self.running_pod_models() == [model_id], self.describe()
        wait_for(
            "the old pods to finish their graceful exit",
            lambda: self.pod_models() == [model_id],
            timeout=90,
            details=self.describe,
        )

    def predictor_args(self, model_id: str) -> dict[str, str]:
        """The predictor's command-line options in the Deployment of ``model_id``."""
        found = self.cluster.apps().list_namespaced_deployment(
            self.namespace, label_selector=APP_SELECTOR
        )
        (deployment,) = [
            d for d in found.items if d.metadata.annotations["edgecast.io/model-id"] == model_id
        ]
        args = deployment.spec.template.spec.containers[0].args
        return {key: value for key, value in itertools.pairwise(args) if key.startswith("--")}

    def snapshot(self) -> tuple[dict[str, str], str, list[str]]:
        """The Deployments' and the Service's resourceVersions and the store's bundles."""
        return self.deployments(), self.service_version(), self.stored()

    def deploy(self, *args: str) -> PlaybookRun:
        return playbook(*self.deploy_args, *args, timeout=900)

    def service_version(self) -> str:
        service = self.cluster.core().read_namespaced_service(self.service, self.namespace)
        return str(service.metadata.resource_version)

    def stored(self) -> list[str]:
        return sorted(p.name for p in self.store.iterdir())

    def rollout(self, *args: str) -> PlaybookRun:
        return playbook(
            "rollout-model.yml",
            "-i",
            str(self.inventory),
            "-e",
            f"model_rollout_kubeconfig={self.rollout_kubeconfig}",
            *args,
            timeout=600,
        )

    def describe(self) -> str:
        core = self.cluster.core()
        lines = []
        for pod in core.list_namespaced_pod(self.namespace).items:
            statuses = pod.status.container_statuses or []
            lines.append(f"{pod.metadata.name} {pod.status.phase} {[s.state for s in statuses]}")
        events = core.list_namespaced_event(self.namespace).items
        lines += [f"event {e.involved_object.name}: {e.reason} {e.message}" for e in events[-15:]]
        return "\n".join(lines) + "\n" + self.cluster.diagnostics()


@pytest.fixture(scope="module")
def node(kube_cluster: Cluster) -> str:
    nodes = kube_cluster.core().list_node().items
    assert len(nodes) == 1, [n.metadata.name for n in nodes]
    return str(nodes[0].metadata.name)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rollout-cluster")


@pytest.fixture(scope="module")
def inventory(
    node: str, work: Path, predictor_image: BuiltImage
) -> Iterator[tuple[Path, Path, str, str]]:
    """The node as an edge host reached locally; its store, namespace and image (the one the
    predictor_image role built for this test run)."""
    suffix = secrets.token_hex(4)
    namespace = f"edgecast-test-{suffix}"
    image = predictor_image.ref
    # Under /var/lib: every parent is world-searchable, so uid 10001 in the pods can read it.
    store = Path(f"/var/lib/edgecast-test-{suffix}") / "models"
    inventory = edge_inventory(node, namespace, store, work, REVISION)
    path = work / "inventory.yml"
    path.write_text(json.dumps(inventory))
    try:
        yield path, store, namespace, image
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)


@pytest.fixture(scope="module")
def edge(
    kube_cluster: Cluster,
    node: str,
    work: Path,
    inventory: tuple[Path, Path, str, str],
    trained_store: TrainedStore,
) -> Iterator[Edge]:
    path, store, namespace, image = inventory
    rollout_kubeconfig = work / "rollout.kubeconfig"
    first = trained_store.root / trained_store.model_ids[0]
    args = (
        "playbooks/deploy-predictor.yml",
        "-i",
        str(path),
        "-e",
        f"predictor_deploy_kubeconfig={kube_cluster.kubeconfig}",
        "-e",
        f"predictor_deploy_rollout_kubeconfig={rollout_kubeconfig}",
        "-e",
        f"predictor_deploy_bundle={first}",
        "-e",
        f"predictor_deploy_image={image}",
    )
    edge = Edge(kube_cluster, node, namespace, path, store, rollout_kubeconfig, image, args)
    try:
        started = time.monotonic()
        result = playbook(*args, timeout=900)
        assert result.rc == 0, output_of(result) + edge.describe()
        print(f"first deployment: {time.monotonic() - started:.0f} s")
        yield edge
    finally:
        kube_cluster.delete_namespace(namespace)


def steady_load(edge: Edge, out: Path) -> LoadProcess:
    """The load client against the Service ClusterIP, flowing before the block starts."""
    return LoadProcess(edge.url(), out, duration=300).start()


def assert_no_failure(load: LoadProcess, at_least: int = 10) -> list[dict]:
    done = load.records()
    failed = load.failed()
    assert not failed, f"{len(failed)} of {len(done)} requests failed: {failed[:5]}"
    assert len(done) >= at_least, len(done)
    return done


def test_the_deploy_role_serves_the_first_model_through_the_service(
    edge: Edge, trained_store: TrainedStore
) -> None:
    first = trained_store.model_ids[0]
    assert edge.deployment_models() == [first]

    def ready() -> bool:
        pods = edge.cluster.core().list_namespaced_pod(edge.namespace, label_selector=APP_SELECTOR)
        return len(pods.items) == 1 and any(
            c.type == "Ready" and c.status == "True" for c in pods.items[0].status.conditions or []
        )

    wait_for("the predictor pod to be ready", ready, timeout=60, details=edge.describe)
    pod = edge.cluster.core().list_namespaced_pod(edge.namespace, label_selector=APP_SELECTOR)
    assert pod.items[0].spec.node_name == edge.node
    assert pod.items[0].spec.containers[0].image == edge.image
    answer = wait_for("a forecast through the ClusterIP", edge.predict, timeout=60)
    assert answer["model_id"] == first
    assert len(answer["forecast_kwh"]) == 24
    assert edge.stored() == [first]
    assert oct(edge.rollout_kubeconfig.stat().st_mode & 0o777) == "0o600"

    before = edge.snapshot()
    again = edge.deploy().assert_ok()
    assert again.changed(edge.node) == 0, again.tail(5000)
    checked = edge.deploy("--check").assert_ok()
    assert checked.changed(edge.node) == 0, checked.tail(5000)
    assert edge.snapshot() == before


def test_the_image_the_role_builds_is_the_one_the_pods_run(
    edge: Edge, predictor_image: BuiltImage, trained_store: TrainedStore, work: Path
) -> None:
    """The image and deploy plays in one run, as site.yml runs them, with the roles' default tag:
    the reference the build publishes (its tag carries the build context's digest) is the one
    the Deployment gets, and the pod is replaced to run it."""
    first = trained_store.model_ids[0]
    # The source of the image this run built; the build context is the inventory's own.
    image_vars = {"predictor_image_source_dir": str(predictor_image.source_dir)}
    image_arg = edge.deploy_args.index(f"predictor_deploy_image={edge.image}")
    deploy_args = edge.deploy_args[: image_arg - 1]
    both = work / "image-and-deploy.yml"
    both.write_text(
        json.dumps(
            [
                {"ansible.builtin.import_playbook": str(REPO / "playbooks" / name)}
                for name in ("predictor-image.yml", "deploy-predictor.yml")
            ]
        )
    )
    result = playbook(
        str(both), *deploy_args[1:], "-e", json.dumps(image_vars), timeout=900
    ).assert_ok()

    (built,) = result.results("Publish the image reference of this build context")
    ref = built["ansible_facts"]["predictor_image_ref"]
    labels = json.loads(
        docker("image", "inspect", "--format", "{{json .Config.Labels}}", ref).stdout
    )
    digest = labels["io.edgecast.context-digest"]
    assert re.fullmatch(rf"edgecast-predictor:[0-9.]+-amd64-{digest[:12]}", ref), ref
    assert ref != edge.image
    assert result.changed(edge.node) >= 1, result.tail(5000)  # the Deployment, at least

    def runs_the_built_image() -> bool:
        pods = edge.cluster.core().list_namespaced_pod(edge.namespace, label_selector=APP_SELECTOR)
        return [p.spec.containers[0].image for p in pods.items] == [ref] and any(
            c.type == "Ready" and c.status == "True" for c in pods.items[0].status.conditions or []
        )

    wait_for("the pod to run the new image", runs_the_built_image, 120, details=edge.describe)
    assert (
        wait_for("a forecast through the ClusterIP", edge.predict, timeout=60)["model_id"] == first
    )
    # Later tests deploy this image: their runs change only what they mean to change.
    edge.image = ref
    edge.deploy_args = (*deploy_args, "-e", f"predictor_deploy_image={ref}")
    assert edge.deploy().assert_ok().changed(edge.node) == 0


def test_a_changed_setting_before_any_rollout_is_applied_in_place(
    edge: Edge, trained_store: TrainedStore
) -> None:
    first = trained_store.model_ids[0]
    name, before = next(iter(edge.deployments().items()))
    edge.deploy_args = (*edge.deploy_args, "-e", "predictor_deploy_threads=2")

    checked = edge.deploy("--check").assert_ok()
    assert checked.changed(edge.node) == 1, checked.tail(5000)
    (planned,) = checked.results("Start the node's predictor and point its Service at it")
    (action,) = planned["actions"]
    assert action.startswith(f"update Deployment {name} (metadata.annotations.edgecast.io/spec: ")
    assert edge.deployments() == {name: before}

    result = edge.deploy().assert_ok()

    assert result.changed(edge.node) == 1, result.tail(5000)
    assert list(edge.deployments()) == [name], "the same model's Deployment, updated"
    assert edge.predictor_args(first)["--threads"] == "2"
    assert (
        wait_for("a forecast through the ClusterIP", edge.predict, timeout=60)["model_id"] == first
    )
    assert edge.deploy().assert_ok().changed(edge.node) == 0


def test_the_rollout_kubeconfig_is_limited_to_the_namespace(edge: Edge) -> None:
    api = config.new_client_from_config(config_file=str(edge.rollout_kubeconfig))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    assert apps.list_namespaced_deployment(edge.namespace).items
    core.read_namespaced_service(edge.service, edge.namespace)
    for forbidden in (
        core.list_node,
        core.list_namespace,
        lambda: core.list_namespaced_secret(edge.namespace),
        lambda: core.list_namespaced_pod("default"),
        lambda: core.delete_namespaced_service(edge.service, edge.namespace),
    ):
        with pytest.raises(ApiException) as refused:
            forbidden()
        assert refused.value.status == 403, refused.value


def test_a_rollout_in_check_mode_changes_nothing(edge: Edge, trained_store: TrainedStore) -> None:
    first, second = trained_store.model_ids
    before = edge.snapshot()

    result = edge.rollout("--check", "-e", f"model_bundle={trained_store.root / second}")

    assert result.rc == 0, output_of(result)
    assert f"to model {second}" in result.stdout, output_of(result)
    assert edge.snapshot() == before
    assert edge.serving() == first


def test_a_pod_switch_under_load_fails_no_request(
    edge: Edge, trained_store: TrainedStore, tmp_path: Path
) -> None:
    first, second = trained_store.model_ids
    bundle = trained_store.root / second
    with steady_load(edge, tmp_path / "load.jsonl") as load:
        started = time.time()
        result = edge.rollout("-e", f"model_bundle={bundle}")
        assert result.rc == 0, output_of(result) + edge.describe()
        edge.old_pods_leave(second)
    done = assert_no_failure(load)
    assert edge.serving() == second
    assert edge.predict()["model_id"] == second
    assert edge.deployment_models() == [second]
    assert sorted(edge.stored()) == sorted([first, second])
    # The new predictor's spec is the serving one's: the setting changed in place stays.
    assert edge.predictor_args(second)["--threads"] == "2"
    # It scores the model it replaced in shadow, loaded from the node's store.
    assert edge.predictor_args(second)["--shadow-model-id"] == first
    deadline = time.monotonic() + 60  # loaded after the new model serves, off its path
    while (shadow := requests.get(f"{edge.url()}/v1/model", timeout=10).json()["shadow"])[
        "model_id"
    ] != first:
        assert time.monotonic() < deadline, shadow
        time.sleep(0.5)
    served = [r for r in done if r["start"] >= started and r["model_id"] == second]
    assert served, "no request was answered by the new model"
    phases = phases_of(result.stdout)
    for phase in ("create", "ready", "verify_pod", "switch", "endpoints", "drain", "total"):
        assert phase in phases, phases
    edge.phases.append(phases)
    print(f"\npod switch {first} -> {second}: {len(done)} requests, 0 failed; phases (s) {phases}")


def test_the_deploy_role_keeps_the_model_a_rollout_chose(
    edge: Edge, trained_store: TrainedStore
) -> None:
    first, second = trained_store.model_ids
    before = edge.snapshot()

    result = edge.deploy().assert_ok()

    assert result.changed(edge.node) == 0, result.tail(5000)
    text = " ".join(result.stdout.split())
    assert f"selects model {second}, set by a rollout, not the first bundle {first}" in text
    assert "it is left as it is" in text
    assert edge.snapshot() == before
    assert edge.serving() == second


def test_a_corrupted_bundle_is_refused_before_the_cluster_changes(
    edge: Edge, trained_store: TrainedStore, tmp_path: Path
) -> None:
    before = edge.serving()
    deployments, service, stored = edge.deployments(), edge.service_version(), edge.stored()
    bad = clone_bundle(trained_store.root / trained_store.model_ids[1], tmp_path, "corrupt-0001")
    flip_weights_byte(bad)
    with steady_load(edge, tmp_path / "load.jsonl") as load:
        result = edge.rollout("-e", f"model_bundle={bad}")
    assert result.rc != 0
    assert "bundle refused" in result.stdout and "weights.npz" in result.stdout, output_of(result)
    assert edge.deployments() == deployments
    assert edge.service_version() == service
    assert edge.stored() == stored
    assert edge.serving() == before
    assert_no_failure(load, at_least=3)


def test_a_bundle_failing_parity_on_the_node_is_reverted(
    edge: Edge, trained_store: TrainedStore, tmp_path: Path
) -> None:
    before = edge.serving()
    deployments, service = edge.deployments(), edge.service_version()
    bad = clone_bundle(
        trained_store.root / trained_store.model_ids[1],
        tmp_path,
        f"shifted-reference-{secrets.token_hex(3)}",
    )
    shift_reference_outputs(bad)
    with steady_load(edge, tmp_path / "load.jsonl") as load:
        result = edge.rollout("-e", f"model_bundle={bad}", "-e", "model_rollout_ready_timeout=45")
    text = result.stdout
    assert result.rc != 0, output_of(result)
    assert f"to model {bad.name} failed in phase ready" in text, output_of(result)
    assert "was not available within 45s" in text, output_of(result)
    assert "deleted" in text and f"still selecting model {before}" in text, output_of(result)
    assert "running but not ready (readiness probe failing)" in text, output_of(result)
    # The predictor's own reason, read from its /readyz through the API server's pod proxy.
    assert "predictor /readyz: model refused: parity check failed" in text, output_of(result)
    wait_for(
        "the new Deployment and its pod to be gone",
        lambda: edge.deployment_models() == [before] and edge.pod_models() == [before],
        timeout=90,
        details=edge.describe,
    )
    assert edge.deployments() == deployments
    assert edge.service_version() == service
    assert edge.serving() == before
    assert_no_failure(load)


def test_a_rollback_to_the_previous_model_under_load(
    edge: Edge, trained_store: TrainedStore, tmp_path: Path
) -> None:
    first, second = trained_store.model_ids
    assert edge.serving() == second
    with steady_load(edge, tmp_path / "load.jsonl") as load:
        started = time.time()
        result = edge.rollout("-e", "rollback_to=previous")
        assert result.rc == 0, output_of(result) + edge.describe()
        edge.old_pods_leave(first)
    done = assert_no_failure(load)
    assert edge.serving() == first
    assert edge.deployment_models() == [first]
    assert [r for r in done if r["start"] >= started and r["model_id"] == first]
    phases = phases_of(result.stdout)
    edge.phases.append(phases)
    print(f"\nrollback {second} -> {first}: {len(done)} requests, 0 failed; phases (s) {phases}")
    medians = {
        key: statistics.median(p[key] for p in edge.phases if key in p) for key in edge.phases[0]
    }
    print(
        f"pod switch on the cluster, {len(edge.phases)} rollouts, phase medians (s): "
        + ", ".join(f"{key} {value:.2f}" for key, value in medians.items())
    )


def test_status_reads_the_node_through_the_service_proxy_with_the_rollout_role(
    edge: Edge, trained_store: TrainedStore, tmp_path: Path
) -> None:
    first, second = trained_store.model_ids
    out = tmp_path / "status.json"
    with steady_load(edge, tmp_path / "load.jsonl") as load:
        time.sleep(1.0)
        result = playbook(
            "status.yml",
            "-i",
            str(edge.inventory),
            "-e",
            f"edgecast_kubeconfig={edge.rollout_kubeconfig}",
            "-e",
            "status_interval=3",
            "-e",
            f"status_output={out}",
        )
    assert result.rc == 0, output_of(result)
    assert_no_failure(load)
    (row,) = json.loads(out.read_text())
    assert row["error"] is None, row
    assert (row["node"], row["model_id"], row["ready"]) == (edge.node, edge.serving(), True)
    assert row["model_id"] == first and row["previous_model_id"] == second  # after the rollback
    assert row["requests"] > 0 and row["errors_5xx"] == 0 and row["p99_ms"] > 0, row
    assert any(line.startswith(edge.node) and first in line for line in result.stdout.splitlines())


def test_the_deploy_role_never_prunes_the_models_in_use(
    edge: Edge, trained_store: TrainedStore
) -> None:
    """Back on the first model, with the second one before it and a refused bundle in the store:
    a deploy run that keeps one bundle prunes the refused one only."""
    first, second = trained_store.model_ids
    assert len(edge.stored()) == 3, edge.stored()

    result = edge.deploy("-e", "predictor_deploy_keep=1").assert_ok()

    assert edge.stored() == sorted([first, second]), result.tail(3000)
    assert edge.serving() == first
