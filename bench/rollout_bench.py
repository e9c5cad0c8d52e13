"""Rollouts on the embedded default under steady load: how long until the new model serves.

    .venv/bin/python bench/rollout_bench.py --rollouts 20

Trains two small b13 bundles (or takes ``--bundles A B``), runs ``site.yml`` on a private var/
folder and port, starts the load client as a separate process, then runs
``rollout-model.yml`` alternating the bundles. Prints, per rollout, the time from the playbook's
start to the first request answered by the new model, the playbook's wall time, and Ansible's
per-task times (profile_tasks) of the last run; then medians and the failed requests, beside
the floor: the wall time of ``ansible-playbook`` running an empty play on the same inventory
(Ansible's own start-up), measured in the same run.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgecast_harness.bundles import two_bundles
from edgecast_harness.load_client import LoadProcess
from edgecast_harness.playbook import run_playbook
from edgecast_harness.ports import free_port
from edgecast_harness.predictor import edgecast

PROFILE = {"ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--bundles", nargs=2, type=Path, help="two bundle folders to alternate")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgecast-rollout-bench-"))
    bundles = two_bundles(args.bundles, work)
    port = free_port()
    extra = ["-e", f"edgecast_var={work / 'var'}", "-e", f"local_runtime_port={port}"]
    run_playbook("site.yml", *extra, "-e", f"model_training_bundle={bundles[0]}", env=PROFILE)
    load = LoadProcess(f"http://127.0.0.1:{port}", work / "requests.jsonl", duration=600)
    to_serving, walls, phases = [], [], []
    last = ""
    try:
        load.start()
        for number in range(args.rollouts):
            bundle = bundles[(number + 1) % 2]
            started = time.time()
            last = run_playbook(
                "rollout-model.yml", *extra, "-e", f"model_bundle={bundle}", env=PROFILE
            ).stdout
            walls.append(time.time() - started)
            served = [r["start"] for r in load.records() if r.get("model_id") == bundle.name]
            to_serving.append(min(t for t in served if t >= started) - started)
            match = re.search(r"phases \(s\): (\{[^}]*\})", last)
            phases.append(match.group(1) if match else "")
            print(f"rollout {number + 1:2d}: new model serving after {to_serving[-1]:.2f} s, "
                  f"playbook {walls[-1]:.2f} s, switch {phases[-1]}")  # fmt: skip
    finally:
        load.stop()
        edgecast("service", "stop", "--pid-file", str(work / "var/run/predictor.pid"), check=False)
    floor = empty_play_floor(work, extra, rounds=5)
    records, failed = load.records(), load.failed()
    tasks = [line for line in last.splitlines() if re.search(r"-{4,} \d+\.\d+s$", line)]
    print("\nslowest tasks of the last rollout (profile_tasks):")
    print("\n".join(tasks[:8]))
    print(
        f"\n{args.rollouts} rollouts: playbook start to new model serving median "
        f"{statistics.median(to_serving):.2f} s (max {max(to_serving):.2f}); playbook wall "
        f"median {statistics.median(walls):.2f} s; {len(records)} requests, {len(failed)} failed"
    )
    print(
        f"floor: an empty play on the same inventory takes {floor:.2f} s (median of 5); new "
        f"model serving x{statistics.median(to_serving) / floor:.2f}, playbook wall "
        f"x{statistics.median(walls) / floor:.2f} of it"
    )
    return 1 if failed else 0


def empty_play_floor(work: Path, extra: list[str], rounds: int) -> float:
    """Median wall time of ``ansible-playbook`` with one empty play on the edge hosts."""
    play = work / "empty.yml"
    play.write_text(
        "- name: Nothing\n  hosts: edge\n  gather_facts: false\n  tasks: []\n", encoding="utf-8"
    )
    walls = []
    for _ in range(rounds):
        started = time.time()
        run_playbook(str(play), *extra)
        walls.append(time.time() - started)
    return statistics.median(walls)


if __name__ == "__main__":
    sys.exit(main())
