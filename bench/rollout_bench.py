"""Rollouts on the embedded default under steady load: how long until the new model serves.

    .venv/bin/python bench/rollout_bench.py --rollouts 20

Trains two small b13 bundles (or takes ``--bundles A B``), runs ``site.yml`` on a private var/
folder and port, starts tests/load_client.py as a separate process, then runs
``rollout-model.yml`` alternating the bundles. Prints, per rollout, the time from the playbook's
start to the first request answered by the new model, the playbook's wall time, and Ansible's
per-task times (profile_tasks) of the last run; then medians and the failed requests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(args[:3])} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    return result


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--bundles", nargs=2, type=Path, help="two bundle folders to alternate")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgecast-rollout-bench-"))
    if args.bundles:
        bundles = [b.resolve() for b in args.bundles]
    else:
        for seed in ("0", "1"):
            run(str(BIN / "edgecast"), "train", "--building", "b13", "--out", str(work / "b"),
                "--seed", seed, "--epochs", "3")  # fmt: skip
        bundles = sorted((work / "b").iterdir())
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
    }
    port = free_port()
    extra = ["-e", f"edgecast_var={work / 'var'}", "-e", f"local_runtime_port={port}"]
    run(str(BIN / "ansible-playbook"), "site.yml", *extra,
        "-e", f"model_training_bundle={bundles[0]}", env=env)  # fmt: skip
    requests_log = work / "requests.jsonl"
    client = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "load_client.py"), "--url",
         f"http://127.0.0.1:{port}", "--duration", "600", "--out", str(requests_log)],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    to_serving, walls, phases = [], [], []
    last = ""
    try:
        time.sleep(1.0)
        for number in range(args.rollouts):
            bundle = bundles[(number + 1) % 2]
            started = time.time()
            last = run(str(BIN / "ansible-playbook"), "rollout-model.yml", *extra,
                       "-e", f"model_bundle={bundle}", env=env).stdout  # fmt: skip
            walls.append(time.time() - started)
            served = [
                json.loads(line)["start"]
                for line in requests_log.read_text().splitlines()
                if f'"model_id": "{bundle.name}"' in line
            ]
            to_serving.append(min(t for t in served if t >= started) - started)
            match = re.search(r"phases \(s\): (\{[^}]*\})", last)
            phases.append(match.group(1) if match else "")
            print(f"rollout {number + 1:2d}: new model serving after {to_serving[-1]:.2f} s, "
                  f"playbook {walls[-1]:.2f} s, switch {phases[-1]}")  # fmt: skip
    finally:
        client.terminate()
        client.wait(timeout=30)
        subprocess.run(
            [str(BIN / "edgecast"), "service", "stop", "--pid-file",
             str(work / "var/run/predictor.pid")], capture_output=True
        )  # fmt: skip
    records = [json.loads(line) for line in requests_log.read_text().splitlines()]
    failed = [r for r in records if r["status"] != 200]
    tasks = [line for line in last.splitlines() if re.search(r"-{4,} \d+\.\d+s$", line)]
    print("\nslowest tasks of the last rollout (profile_tasks):")
    print("\n".join(tasks[:8]))
    print(
        f"\n{args.rollouts} rollouts: playbook start to new model serving median "
        f"{statistics.median(to_serving):.2f} s (max {max(to_serving):.2f}); playbook wall "
        f"median {statistics.median(walls):.2f} s; {len(records)} requests, {len(failed)} failed"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
