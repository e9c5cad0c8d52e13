"""The fleet as one cluster: `site.yml` to a predictor on every edge node, and rollouts across it.

The hosts are the fleet tier's (a cloud host and two edge nodes of different profiles, each its
own container with sshd, reached over SSH as a sudo user). Their Docker engines come from
`playbooks/provision-edge.yml`; then both edge nodes join the harness's Kubernetes as nodes of
their own, one with each runtime k3s offers (edgecast_harness.fleet_kube: stand-in, named as
such: the harness's kubelet, k3s's own binaries cannot be had here): the Jetson node runs its
pods in Docker through cri-dockerd, as `k3s agent --docker` does (the paper's arrangement, for
the nvidia runtime); the Raspberry Pi node in a containerd of k3s's layout, k3s's default, so
the image Docker builds there is copied into that containerd. The inventory is the fleet's
without the k3s groups, as for a cluster the user already runs, with each node's
`k3s_container_runtime`, so `site.yml` trains on the cloud host over SSH, builds the image on
each node, makes its runtime hold it, and deploys the first model with a Deployment pinned to
each node. Load flows to every
node's Service from this machine while `rollout-model.yml` switches pods node by node; then a
node whose store cannot be written stops the fleet by `rollout_max_fail_percentage`, and an
unreachable node fails alone.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.cluster import Cluster, wait_for
from edgecast_harness.docker import base_image
from edgecast_harness.fleet import Fleet, edge_image_vars, jetpack_stand_in
from edgecast_harness.fleet_kube import K3S_CTR, join, leave
from edgecast_harness.images import copy_source
from edgecast_harness.load_client import LoadProcess
from edgecast_harness.playbook import PlaybookRun, run_playbook

BASE_IMAGES = ("amd64 systemd", "amd64")
EDGE = ("pi-1", "nano-1")
# Each node's k3s_container_runtime: k3s's default on the Pi, Docker on the Jetson.
RUNTIME = {"pi-1": "containerd", "nano-1": "docker"}
APP_SELECTOR = "app.kubernetes.io/name=edgecast-predictor"


@dataclass
class Site:
    cluster: Cluster
    fleet: Fleet
    inventory: Path
    namespace: str
    extra: dict
    joining: list[str] = field(default_factory=list)
    first_run_s: float = 0.0

    def play(self, playbook: str, *args: str, timeout: float = 2400) -> PlaybookRun:
        return run_playbook(
            playbook, "-i", str(self.inventory), "-e", json.dumps(self.extra), *args,
            check=False, timeout=timeout,
        )  # fmt: skip

    def url(self, node: str) -> str:
        service = self.cluster.core().read_namespaced_service(f"predictor-{node}", self.namespace)
        ip = str(service.spec.cluster_ip)
        self.cluster.wait_proxied(ip, 8080)
        return f"http://{ip}:8080"

    def serving(self, node: str) -> str:
        answer = requests.get(f"{self.url(node)}/v1/model", timeout=10)
        return str(answer.json()["model_id"])

    def pods(self) -> dict[str, list[str]]:
        """Node -> the model ids of the predictor pods running there."""
        found: dict[str, list[str]] = {}
        pods = self.cluster.core().list_namespaced_pod(self.namespace, label_selector=APP_SELECTOR)
        for pod in pods.items:
            if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
                found.setdefault(pod.spec.node_name, []).append(
                    pod.metadata.annotations["edgecast.io/model-id"]
                )
        return found


@pytest.fixture(scope="module")
def site(
    fleet: Fleet, kube_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("fleet-site")
    namespace = f"edgecast-fleet-{secrets.token_hex(3)}"
    layout = json.loads(fleet.inventory.read_text())
    for group in ("k3s_server", "k3s_agent"):  # the cluster is the harness's, not k3s
        layout["all"]["children"].pop(group, None)
    for name, runtime in RUNTIME.items():
        layout["all"]["hosts"][name]["k3s_container_runtime"] = runtime
    # `k3s ctr` on a board; here ctr on the socket of the containerd that stands in for k3s's.
    layout["all"]["hosts"]["pi-1"]["predictor_image_ctr"] = list(K3S_CTR)
    layout["all"]["hosts"]["pi-1"]["predictor_deploy_ctr"] = list(K3S_CTR)
    inventory = work / "inventory.yml"
    inventory.write_text(json.dumps(layout))
    base = base_image("amd64")
    source = copy_source(work / "source")
    extra = {
        "edgecast_namespace": namespace,
        "predictor_deploy_namespace": namespace,
        "predictor_deploy_kubeconfig": str(kube_cluster.kubeconfig),
        "predictor_deploy_rollout_kubeconfig": str(work / "rollout.kubeconfig"),
        "model_rollout_kubeconfig": str(work / "rollout.kubeconfig"),
        "predictor_deploy_fetch_dir": str(work / "fetched"),
        "model_training_fetch_dir": str(work / "trained"),
        "model_training_source_dir": str(source),
        **edge_image_vars(source, base),
    }
    site = Site(kube_cluster, fleet, inventory, namespace, extra)
    jetpack_stand_in(fleet, "nano-1")
    # Docker on the nodes first (the play site.yml runs first too): the nodes join with it.
    site.play("playbooks/provision-edge.yml", "--limit", ",".join(EDGE)).assert_ok()
    try:
        for name in EDGE:
            site.joining.append(name)
            join(kube_cluster, fleet, name, work, runtime=RUNTIME[name])
        started = time.monotonic()
        first = site.play("site.yml")
        site.first_run_s = time.monotonic() - started
        assert first.rc == 0, first.tail(8000)
        print(f"site.yml, first run on the fleet: {site.first_run_s:.0f} s")
        yield site
    finally:
        kube_cluster.delete_namespace(namespace)
        for name in site.joining:
            leave(kube_cluster, fleet, name)


def running_images(site: Site, name: str) -> list[str]:
    """The image IDs (short, as Docker lists them) of the predictor containers running in the
    node's runtime."""
    host = site.fleet[name]
    if RUNTIME[name] == "docker":
        return host.run(
            "docker ps --format '{{.Image}}' "
            f"--filter label=io.kubernetes.pod.namespace={site.namespace} "
            "--filter label=io.kubernetes.container.name=predictor"
        ).split()
    # containerd: the container's image, then that image's config digest (Docker's image ID).
    ctr = " ".join([*K3S_CTR, "--namespace", "k8s.io"])
    found = []
    for container in host.run(
        f"{ctr} containers list --quiet "
        # One filter: a comma joins conditions (separate filters would be alternatives).
        f'\'labels."io.kubernetes.pod.namespace"=={site.namespace},'
        'labels."io.kubernetes.container.name"==predictor\''
    ).split():
        if not host.run(f"{ctr} tasks list | grep '^{container} .*RUNNING'", check=False):
            continue
        image = json.loads(host.run(f"{ctr} containers info {container}"))["Image"]
        manifest = host.run(f"{ctr} images list 'name=={image}'").splitlines()[1].split()[2]
        config = json.loads(host.run(f"{ctr} content get {manifest}"))["config"]["digest"]
        found.append(config.removeprefix("sha256:")[:12])
    return found


def test_site_yml_serves_on_every_edge_node_from_its_own_engine(site: Site) -> None:
    (model_id,) = [p.name for p in (Path(site.extra["model_training_fetch_dir"])).iterdir()]
    assert site.pods() == {name: [model_id] for name in EDGE}
    for name in EDGE:
        answer = requests.post(f"{site.url(name)}/v1/predict", json=window_from_data(), timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_id"] == model_id
        # The pod's container runs in that node's runtime, from the image built there.
        running = running_images(site, name)
        built = site.fleet[name].run("docker image ls --format '{{.ID}}' edgecast-predictor")
        assert len(running) == 1 and running[0] in built.split(), (running, built)
    # The Jetson node's pods ran through its default runtime, the stand-in for nvidia's.
    calls = site.fleet["nano-1"].run(
        "grep -c ' create ' /var/log/nvidia-container-runtime-stand-in.log"
    )
    assert int(calls) >= 2


def test_a_second_site_yml_run_and_a_checked_one_change_nothing(site: Site) -> None:
    started = time.monotonic()
    again = site.play("site.yml")
    print(
        f"site.yml, second run: {time.monotonic() - started:.0f} s (first {site.first_run_s:.0f} s)"
    )
    assert again.rc == 0, again.tail()
    assert again.changed() == 0, again.changed_tasks()
    checked = site.play("site.yml", "--check")
    assert checked.rc == 0, checked.tail()
    assert checked.changed() == 0, checked.changed_tasks()


def loads(site: Site, out: Path) -> dict[str, LoadProcess]:
    return {
        name: LoadProcess(site.url(name), out / f"{name}.jsonl", duration=900).start()
        for name in EDGE
    }


def stop_all(running: dict[str, LoadProcess]) -> dict[str, list[dict]]:
    for load in running.values():
        load.stop()
    return {name: load.records() for name, load in running.items()}


def test_a_rollout_one_node_at_a_time_under_load_fails_no_request(
    site: Site, trained_store: TrainedStore, tmp_path: Path
) -> None:
    new = trained_store.model_ids[1]
    running = loads(site, tmp_path)
    try:
        started = time.monotonic()
        result = site.play(
            "rollout-model.yml", "-e", f"model_bundle={trained_store.root / new}",
            "-e", "rollout_serial=1", timeout=900,
        )  # fmt: skip
        took = time.monotonic() - started
        # The playbook ends once the old pods are terminating; each load's kept-alive
        # connection moves to the new model when its old pod closes it, in its graceful exit.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not all(
            (last := load.records()) and last[-1].get("model_id") == new
            for load in running.values()
        ):
            time.sleep(0.5)
    finally:
        records = stop_all(running)
    assert result.rc == 0, result.tail(6000)
    for name in EDGE:
        failed = [r for r in records[name] if r.get("status") != 200]
        assert not failed, f"{name}: {len(failed)} of {len(records[name])} failed: {failed[:3]}"
        assert records[name][-1]["model_id"] == new, records[name][-1]
        print(f"{name}: {len(records[name])} requests under the rollout, 0 failed")
    assert site.pods() == {name: [new] for name in EDGE}
    # One node at a time: the first node's switch was reported before the second's began.
    switch = "Switch the node's predictor to the model"
    switched = [
        e["event_data"]["host"]
        for e in result.events
        if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == switch
    ]
    assert switched == list(EDGE), switched
    for name in EDGE:
        (report,) = result.results("Report the switch", name)
        print(f"{name}: switch phases (s) {report['msg'].rsplit('phases (s): ', 1)[-1]}")
    print(f"rollout-model.yml -e rollout_serial=1 on {len(EDGE)} nodes: {took:.1f} s")


def test_a_node_that_fails_stops_the_fleet_and_keeps_serving(
    site: Site, trained_store: TrainedStore
) -> None:
    before = {name: site.serving(name) for name in EDGE}
    target = trained_store.model_ids[0]
    assert set(before.values()) != {target}
    store = "/var/lib/edgecast/models"
    pi = site.fleet["pi-1"]
    pi.run(f"mount --bind {store} {store} && mount -o remount,ro,bind {store}")
    try:
        result = site.play(
            "rollout-model.yml", "-e", f"model_bundle={trained_store.root / target}",
            "-e", "rollout_serial=1", "-e", "rollout_max_fail_percentage=0", timeout=900,
        )  # fmt: skip
    finally:
        pi.run(f"umount {store}")
    assert result.rc != 0
    assert result.failed_hosts() == ["pi-1"], result.tail()
    assert "nano-1" not in result.stats.get("processed", {}) or result.changed("nano-1") == 0
    (refused,) = result.results("Move the bundle into the node's store", "pi-1")
    assert "Read-only file system" in refused["msg"], refused
    # The run's last words say it per node (plugins/callback/edgecast_rollout_summary.py).
    summary = result.stdout.split("ROLLOUT SUMMARY", 1)[-1]
    assert 'pi-1: FAILED at "Move the bundle into the node\'s store"' in summary, summary
    assert "Read-only file system" in summary, summary
    assert "nano-1: not reached" in summary, summary
    # Nothing changed anywhere: the failed node serves its old model, the next was not reached.
    assert {name: site.serving(name) for name in EDGE} == before
    assert site.pods() == {name: [before[name]] for name in EDGE}


def test_an_unreachable_node_fails_alone(site: Site, trained_store: TrainedStore) -> None:
    before = {name: site.serving(name) for name in EDGE}
    target = trained_store.model_ids[0]
    nano = site.fleet["nano-1"]
    nano.run("iptables -I INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset")
    try:
        # The default rollout_max_fail_percentage (0): the node that cannot be reached drops
        # out of the run, and the others go on.
        result = site.play(
            "rollout-model.yml", "-e", f"model_bundle={trained_store.root / target}",
            timeout=900,
        )  # fmt: skip
    finally:
        nano.run("iptables -D INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset")
    assert result.failed_hosts() == ["nano-1"], result.tail()
    assert result.recap("nano-1")["dark"] == 1, result.recap("nano-1")
    assert "fatal: [nano-1]: UNREACHABLE!" in result.stdout
    summary = result.stdout.split("ROLLOUT SUMMARY", 1)[-1]
    assert "nano-1: UNREACHABLE" in summary and "pi-1: ok:" in summary, summary
    assert result.rc == 4  # ansible-playbook's exit status for unreachable hosts
    wait_for("pi-1 to serve the new model", lambda: site.serving("pi-1") == target, timeout=60)
    assert site.serving("nano-1") == before["nano-1"]
