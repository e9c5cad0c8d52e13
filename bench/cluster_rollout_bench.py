"""Pod-switch rollouts on the real Kubernetes of tests/infra/cluster, under steady load.

    .venv/bin/python bench/cluster_rollout_bench.py --rollouts 6

Starts the harness's cluster (building it when its cache is empty), builds the predictor image
with ``playbooks/predictor-image.yml`` (or takes ``--image``), deploys the first of two b13
bundles with ``playbooks/deploy-predictor.yml`` into a namespace of its own, starts
tests/load_client.py against the node's Service ClusterIP, then runs ``rollout-model.yml``
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
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))

from cluster_support import SharedCluster, edge_inventory, phases_of  # noqa: E402

# The paper's average model-switching latency (weights transferred and the new model serving).
PAPER_SWITCH_S = {"Jetson": 26.49, "Raspberry Pi 4": 39.09}
PHASES = ("create", "ready", "verify_pod", "switch", "endpoints", "verify_service", "drain")


def run(*args: str, timeout: float = 1800, profile: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG")}
    env.update(PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0")
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_tasks"
    result = subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:4])} failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}")
    return result


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def first_answer(log: Path, since: float, model_id: str) -> float:
    """Seconds from ``since`` to the end of the first request answered by ``model_id``."""
    ends = [r["end"] for r in records(log) if r["start"] >= since and r.get("model_id") == model_id]
    return min(ends) - since if ends else float("nan")


def start_load(url: str, log: Path, *extra: str) -> subprocess.Popen:
    load = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "load_client.py"), "--url", url,
         "--duration", "3600", "--max-requests", "10000000", "--out", str(log), *extra],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(records(log)) < 5:
        if time.monotonic() > deadline:
            load.terminate()
            sys.exit(f"no load flowing to {url}")
        time.sleep(0.2)
    return load


def report(table: list[dict[str, float]], logs: dict[str, Path], last: str) -> int:
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
    for name, log in logs.items():
        done = records(log)
        bad = [r for r in done if r["status"] != 200]
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
    work = Path(tempfile.mkdtemp(prefix="edgecast-cluster-bench-"))
    if args.bundles:
        bundles = [b.resolve() for b in args.bundles]
    else:
        for seed in ("0", "1"):
            run(str(BIN / "edgecast"), "train", "--building", "b13", "--out", str(work / "b"),
                "--seed", seed, "--epochs", "3")  # fmt: skip
        bundles = sorted((work / "b").iterdir())

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
    inventory.write_text(json.dumps(edge_inventory(node, namespace, store, image, work, revision)))
    rollout_kubeconfig = work / "rollout.kubeconfig"
    logs = {
        "one kept-alive connection": work / "kept-alive.jsonl",
        "fresh connections": work / "fresh.jsonl",
    }
    loads: list[subprocess.Popen] = []
    table: list[dict[str, float]] = []
    last = ""
    try:
        if not args.image:
            run("bash", "tests/infra/base-image.sh", "amd64")
            started = time.monotonic()
            run(str(BIN / "ansible-playbook"), "-i", str(inventory),
                "playbooks/predictor-image.yml")  # fmt: skip
            print(f"predictor image {image} built in {time.monotonic() - started:.0f} s")
        started = time.monotonic()
        run(str(BIN / "ansible-playbook"), "-i", str(inventory), "playbooks/deploy-predictor.yml",
            "-e", f"predictor_deploy_kubeconfig={cluster.kubeconfig}",
            "-e", f"predictor_deploy_rollout_kubeconfig={rollout_kubeconfig}",
            "-e", f"predictor_deploy_bundle={bundles[0]}")  # fmt: skip
        print(f"first deployment ({bundles[0].name}) in {time.monotonic() - started:.0f} s")
        service = cluster.core().read_namespaced_service(f"predictor-{node}", namespace)
        cluster.wait_proxied(service.spec.cluster_ip, 8080)
        url = f"http://{service.spec.cluster_ip}:8080"
        loads.append(start_load(url, logs["one kept-alive connection"]))
        loads.append(start_load(url, logs["fresh connections"], "--fresh-connections"))
        for number in range(args.rollouts):
            bundle = bundles[(number + 1) % 2]
            begun = time.time()
            last = run(str(BIN / "ansible-playbook"), "-i", str(inventory), "rollout-model.yml",
                       "-e", f"model_rollout_kubeconfig={rollout_kubeconfig}",
                       "-e", f"model_bundle={bundle}", profile=True).stdout  # fmt: skip
            wall = time.time() - begun
            time.sleep(3.0)  # the kept-alive connection moves once the old pod closes it
            row = phases_of(last)
            row["before_pod_switch"] = wall - row["total"]
            row["new_clients_served"] = first_answer(logs["fresh connections"], begun, bundle.name)
            row["kept_alive_moved"] = first_answer(
                logs["one kept-alive connection"], begun, bundle.name
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
        for load in loads:
            load.terminate()
            load.wait(timeout=30)
        if not args.keep:
            cluster.delete_namespace(namespace)
            shutil.rmtree(store.parent, ignore_errors=True)
            if not args.image:
                subprocess.run(["docker", "image", "rm", image], capture_output=True)
                subprocess.run(
                    ["docker", "image", "prune", "--force", "--filter",
                     f"label=io.edgecast.build-stage-of={image}"],
                    capture_output=True,
                )  # fmt: skip
            shared.stop()
    return report(table, logs, last)


if __name__ == "__main__":
    sys.exit(main())
