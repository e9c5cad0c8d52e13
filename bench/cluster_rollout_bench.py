"""Pod-switch rollouts on the real Kubernetes of tests/infra/cluster, under steady load.

    .venv/bin/python bench/cluster_rollout_bench.py --rollouts 6

Starts the harness's cluster (building it when its cache is empty), builds the predictor image
with ``playbooks/predictor-image.yml`` (or takes ``--image``), deploys the first of two b13
bundles with ``playbooks/deploy-predictor.yml`` into a namespace of its own, starts
the load client against the node's Service ClusterIP, then runs ``rollout-model.yml``
alternating the bundles with the namespace-scoped rollout kubeconfig only. Prints, per
rollout, the pod switch's phase times (from the rollout's report), the time the playbook spent
before the pod switch (verification, transfer), the time from the playbook's start to the
first request answered by the new model (on fresh connections, as new clients see it; and on
a kept-alive connection, which stays on the old pod until that pod closes it), and the
playbook's wall time; then the medians beside the paper's model-switching latency, the
slowest tasks of the last rollout (profile_tasks), and the failed requests.
Everything it created (namespace, store, image it built, the cluster if it started it) is
removed at the end; ``--keep`` leaves it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgecast_harness.bundles import two_bundles
from edgecast_harness.cluster import SharedCluster, edge_inventory, phases_of
from edgecast_harness.docker import base_image, docker
from edgecast_harness.images import BUILD_STAGE_LABEL
from edgecast_harness.load_client import LoadProcess
from edgecast_harness.playbook import run_playbook

# The paper's average model-switching latency (weights transferred and the new model serving).
PAPER_SWITCH_S = {"Jetson": 26.49, "Raspberry Pi 4": 39.09}
# Seconds after a rollout for the kept-alive connection to reach the new model (the old pod's
# shutdown delay and drain, well within its termination grace period).
KEPT_ALIVE_TIMEOUT_S = 60.0
PHASES = ("create", "ready", "verify_pod", "switch", "endpoints", "verify_service", "drain")


PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}


def first_answer(load: LoadProcess, since: float, model_id: str) -> float:
    """Seconds from ``since`` to the end of the first request answered by ``model_id``."""
    ends = [
        r["end"] for r in load.records() if r["start"] >= since and r.get("model_id") == model_id
    ]
    return min(ends) - since if ends else float("nan")


def report(table: list[dict[str, float]], loads: dict[str, LoadProcess], last: str) -> int:
    tasks = [line for line in last.splitlines() if re.search(r"-{4,} \d+\.\d+s$", line)]
    print("\nslowest tasks of the last rollout (profile_tasks):")
    print("\n".join(tasks[:8]))
    order = ("before_pod_switch", *PHASES, "cleanup", "total")
    order += ("new_clients_served", "kept_alive_moved", "playbook")
    print(f"\nmedians over {len(table)} pod-switch rollouts (s):")
    for key in (k for k in order if k in table[0]):
        values = [row[key] for row in table if key in row]
        print(
            f"  {key:18s} {statistics.median(values):7.2f}"
            f"   (min {min(values):.2f}, max {max(values):.2f})"
        )
    serving = statistics.median(row["new_clients_served"] for row in table)
    print(
        "paper, average model-switching latency: "
        + ", ".join(f"{name} {value:.2f} s" for name, value in PAPER_SWITCH_S.items())
        + f"; here new clients get the new model {serving:.2f} s after the playbook starts"
    )
    failed = 0
    for name, load in loads.items():
        done, bad = load.records(), load.failed()
        failed += len(bad)
        print(f"requests on {name}: {len(done)}, failed: {len(bad)}")
        for record in bad[:5]:
            print(f"  failed: {record}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=6, help="pod switches (at least 5)")
    parser.add_argument("--bundles", nargs=2, type=Path, help="two bundle folders to alternate")
    parser.add_argument("--image", help="an existing predictor image (default: build one)")
    parser.add_argument("--keep", action="store_true", help="leave namespace, store and cluster")
    args = parser.parse_args()
    if args.rollouts < 1:
        parser.error("--rollouts must be positive")
    for name in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG"):  # only the kubeconfigs passed count
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="edgecast-cluster-bench-"))
    bundles = two_bundles(args.bundles, work)

    shared = SharedCluster()
    started = time.monotonic()
    cluster = shared.start()
    print(f"cluster ready in {time.monotonic() - started:.1f} s ({cluster.kubeconfig})")
    node = str(cluster.core().list_node().items[0].metadata.name)
    suffix = secrets.token_hex(4)
    namespace = f"edgecast-bench-{suffix}"
    image = args.image or f"edgecast-predictor:cluster-bench-{suffix}"
    store = Path(f"/var/lib/edgecast-bench-{suffix}") / "models"
    inventory = work / "inventory.yml"
    revision = "0" * 40
    inventory.write_text(json.dumps(edge_inventory(node, namespace, store, work, revision)))
    tag = ("-e", f"predictor_image_tag={image.split(':', 1)[1]}")
    rollout_kubeconfig = work / "rollout.kubeconfig"
    loads: dict[str, LoadProcess] = {}
    table: list[dict[str, float]] = []
    last = ""
    try:
        if not args.image:
            base_image("amd64")
            started = time.monotonic()
            run_playbook("playbooks/predictor-image.yml", "-i", str(inventory), *tag)
            print(f"predictor image {image} built in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        run_playbook("playbooks/deploy-predictor.yml", "-i", str(inventory),
            "-e", f"predictor_deploy_kubeconfig={cluster.kubeconfig}",
            "-e", f"predictor_deploy_rollout_kubeconfig={rollout_kubeconfig}",
            "-e", f"predictor_deploy_bundle={bundles[0]}",
            "-e", f"predictor_deploy_image={image}")  # fmt: skip
        print(f"first deployment ({bundles[0].name}) in {time.monotonic() - started:.0f} s")
        service = cluster.core().read_namespaced_service(f"predictor-{node}", namespace)
        cluster.wait_proxied(service.spec.cluster_ip, 8080)
        url = f"http://{service.spec.cluster_ip}:8080"
        loads["one kept-alive connection"] = LoadProcess(url, work / "kept-alive.jsonl").start()
        loads["fresh connections"] = LoadProcess(
            url, work / "fresh.jsonl", "--fresh-connections"
        ).start()
        for number in range(args.rollouts):
            bundle = bundles[(number + 1) % 2]
            begun = time.time()
            last = run_playbook("rollout-model.yml", "-i", str(inventory),
                                "-e", f"model_rollout_kubeconfig={rollout_kubeconfig}",
                                "-e", f"model_bundle={bundle}", env=PROFILE).stdout  # fmt: skip
            wall = time.time() - begun
            # The kept-alive connection moves once the old pod closes it in its graceful exit,
            # which goes on after the playbook; the next rollout starts after that exit.
            deadline = time.monotonic() + KEPT_ALIVE_TIMEOUT_S
            while time.monotonic() < deadline and math.isnan(
                first_answer(loads["one kept-alive connection"], begun, bundle.name)
            ):
                time.sleep(0.2)
            time.sleep(1.0)
            row = phases_of(last)
            row["before_pod_switch"] = wall - row["total"]
            row["new_clients_served"] = first_answer(loads["fresh connections"], begun, bundle.name)
            row["kept_alive_moved"] = first_answer(
                loads["one kept-alive connection"], begun, bundle.name
            )
            row["playbook"] = wall
            table.append(row)
            print(
                f"rollout {number + 1:2d} -> {bundle.name}: new clients served after "
                f"{row['new_clients_served']:.2f} s, kept-alive connection moved after "
                f"{row['kept_alive_moved']:.2f} s, playbook {wall:.2f} s; phases "
                + " ".join(f"{k} {row[k]:.2f}" for k in (*PHASES, "cleanup", "total") if k in row)
            )
    finally:
        for load in loads.values():
            load.stop()
        if not args.keep:
            cluster.delete_namespace(namespace)
            shutil.rmtree(store.parent, ignore_errors=True)
            if not args.image:
                docker("image", "rm", image, check=False)
                docker("image", "prune", "--force", "--filter",
                       f"label={BUILD_STAGE_LABEL}={image}", check=False)  # fmt: skip
            shared.stop()
    return report(table, loads, last)


if __name__ == "__main__":
    sys.exit(main())
