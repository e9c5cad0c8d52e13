"""The paper's inference-latency and model-switching experiments, run on this machine.

    .venv/bin/python bench/paper.py --where local     # the embedded default, hot swap
    .venv/bin/python bench/paper.py --where cluster   # tests/infra/cluster, pod switch (root)
    .venv/bin/python bench/paper.py --where all

The paper's protocol (Appendix B): a client loop of 62 prediction requests, each carrying 600
hourly loads (~3 weeks), sleeping 1 s after each answer; once on a predictor in steady state,
and again while a new model is rolled out. Here the client is a separate process opening a new
connection per request, as wget does, with 600 real hourly loads of building b13. Each switch is
the real ``rollout-model.yml``: a hot swap through the predictor's admin API on the embedded
default (the predictor ``site.yml`` installs, as ``rollout_bench.py`` does), a pod switch on the
cluster (set up as ``cluster_rollout_bench.py`` does). The switch starts after the loop's 10th
answer; the switching latency is the time from the playbook's start to the end of the first
request the new model answers, and the playbook's own wall time is reported beside it.

The same loop is also run against the floor (``predictor_floor.py``: bare Flask under waitress).
Raw results go to ``--json``; ``docs/benchmarks.md`` and its PNG figures are written from them
(``--render FILE`` writes them again from a saved file, without measuring).

``python bench/paper.py loop --url URL --out FILE`` is the client loop on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from PIL import Image

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DOCS = REPO / "docs"

REQUESTS = 62
SLEEP_S = 1.0
WINDOW = 600
SWITCH_AFTER = 10  # answers of the loop before the switch starts
# Table 1 of the paper: (average, 99th percentile) in seconds.
PAPER = {
    "inference": {"Jetson Nano": (7.72, 9.05), "Raspberry Pi 4": (10.03, 12.85)},
    "switching": {"Jetson Nano": (26.49, 29.17), "Raspberry Pi 4": (39.09, 42.29)},
}
PATHS = {"local": "embedded default, hot swap", "cluster": "k8s pod, pod switch"}
POD_PHASES = ("create", "ready", "verify_pod", "switch", "endpoints", "verify_service", "drain")
SWAP_PHASES = ("swap", "verify")


# ---------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class Stats:
    """Latency figures of one set of requests, in seconds."""

    n: int
    avg: float
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        """Percentiles interpolate linearly between ranks (numpy's default), so the p99 of 62
        values lies between the two largest."""
        if not values:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan)
        data = np.asarray(values, dtype=float)
        return cls(
            len(data),
            float(data.mean()),
            float(np.percentile(data, 50)),
            float(np.percentile(data, 99)),
            float(data.max()),
        )


@dataclass(frozen=True)
class Request:
    """One request of the client loop: wall-clock ``start``/``end`` (epoch seconds)."""

    start: float
    end: float
    status: int | None
    model_id: str | None = None
    runtime: str | None = None
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ok(self) -> bool:
        return self.status == 200


def switching_latency(started: float, requests: Sequence[Request], model_id: str) -> float:
    """Seconds from ``started`` (the switch command's start) to the end of the first request
    answered by ``model_id``; NaN when the new model never answered."""
    ends = [r.end for r in requests if r.ok and r.model_id == model_id and r.end >= started]
    return min(ends) - started if ends else float("nan")


def overlapping(requests: Sequence[Request], start: float, end: float) -> list[Request]:
    """The requests in flight at some moment of [start, end]."""
    return [r for r in requests if r.end >= start and r.start <= end]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, text left-aligned."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"every row needs {len(headers)} cells")

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    def number(value: object) -> bool:
        return isinstance(value, int | float) or cell(value)[:1].isdigit()

    numeric = [
        any(cell(row[i]) for row in rows) and all(number(row[i]) for row in rows if cell(row[i]))
        for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def seconds(value: float) -> str:
    """Seconds for a table: milliseconds under one second, NaN as a dash."""
    if value != value:
        return "-"
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


# ---------------------------------------------------------------- the client loop


def paper_loop(url: str, out: Path, body: bytes, requests_n: int, sleep_s: float) -> None:
    """The paper's loop: ``requests_n`` requests, each on a new connection, sleeping
    ``sleep_s`` after each answer; one JSON line per request, flushed as it goes."""
    target = url.rstrip("/") + "/v1/predict"
    headers = {"Content-Type": "application/json", "Connection": "close"}
    with out.open("w") as stream:
        for _ in range(requests_n):
            record: dict[str, Any] = {"start": time.time()}
            try:
                answer = requests.post(target, data=body, headers=headers, timeout=60)
                record["status"] = answer.status_code
                payload = answer.json() if answer.status_code == 200 else {}
                record["model_id"] = payload.get("model_id")
                record["runtime"] = payload.get("runtime")
                if answer.status_code != 200:
                    record["error"] = answer.text[:200]
            except (requests.RequestException, ValueError) as exc:
                record["status"] = None
                record["error"] = f"{type(exc).__name__}: {exc}"
            record["end"] = time.time()
            stream.write(json.dumps(record) + "\n")
            stream.flush()
            time.sleep(sleep_s)


def read_requests(path: Path) -> list[Request]:
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return [Request(**json.loads(line)) for line in lines]


def request_body() -> bytes:
    from edgecast_harness.bodies import window_from_data

    return json.dumps(window_from_data(window=WINDOW)).encode()


class Loop:
    """The client loop in a process of its own (this script's ``loop`` command)."""

    def __init__(self, url: str, out: Path, requests_n: int = REQUESTS) -> None:
        self.out = out
        body = out.with_suffix(".body.json")
        body.write_bytes(request_body())
        argv = [sys.executable, __file__, "loop", "--url", url, "--out", str(out),
                "--body", str(body), "--requests", str(requests_n)]  # fmt: skip
        self.process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)

    def records(self) -> list[Request]:
        return read_requests(self.out)

    def wait_answers(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.records()) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                _, stderr = self.process.communicate()
                raise RuntimeError(f"the client loop gave no {count} answers in time:\n{stderr}")
            time.sleep(0.05)

    def finish(self) -> list[Request]:
        _, stderr = self.process.communicate(timeout=REQUESTS * (SLEEP_S + 60))
        if self.process.returncode != 0:
            raise RuntimeError(f"the client loop failed:\n{stderr}")
        return self.records()


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Task:
    """One task of the rollout playbook, as ansible-runner's events time it (epoch seconds)."""

    name: str
    start: float
    end: float
    switch: bool = False  # the task that switched the model (it reported phases)

    @property
    def duration(self) -> float:
        return self.end - self.start


def tasks_of(events: Sequence[dict[str, Any]]) -> list[Task]:
    """The playbook's tasks from ansible-runner's events, in the order they ran."""
    tasks = []
    for event in events:
        data = event.get("event_data", {})
        if event.get("event") not in ("runner_on_ok", "runner_on_failed", "runner_on_skipped"):
            continue
        if not (data.get("start") and data.get("end")):
            continue
        start, end = (dt.datetime.fromisoformat(data[k]).timestamp() for k in ("start", "end"))
        reported = bool((data.get("res") or {}).get("phases"))
        tasks.append(Task(str(data.get("task", "?")), start, end, reported))
    return sorted(tasks, key=lambda task: task.start)


@dataclass
class Switch:
    """One rollout across a client loop."""

    model_id: str
    started: float
    finished: float
    phases: dict[str, float]
    requests: list[Request]
    tasks: list[Task] = field(default_factory=list)

    @property
    def to_new_model(self) -> float:
        return switching_latency(self.started, self.requests, self.model_id)

    @property
    def wall(self) -> float:
        return self.finished - self.started


@dataclass
class PathResult:
    """What one path (local or cluster) measured."""

    where: str
    runtime: str
    steady: list[Request]
    switches: list[Switch] = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""
    setup: dict[str, float] = field(default_factory=dict)


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_loop(url: str, work: Path, name: str) -> list[Request]:
    return Loop(url, work / f"{name}.jsonl").finish()


def run_switches(
    url: str, work: Path, bundles: list[Path], count: int, rollout: list[str], where: str
) -> list[Switch]:
    """``count`` rollouts alternating ``bundles`` (the first serves), each across its loop."""
    from edgecast_harness.cluster import phases_of
    from edgecast_harness.playbook import run_playbook

    switches = []
    for number in range(count):
        bundle = bundles[(number + 1) % 2]
        loop = Loop(url, work / f"{where}-switch-{number + 1}.jsonl")
        loop.wait_answers(SWITCH_AFTER)
        started = time.time()
        run = run_playbook("rollout-model.yml", *rollout, "-e", f"model_bundle={bundle}")
        finished = time.time()
        phases = phases_of(run.stdout)
        switch = Switch(bundle.name, started, finished, phases, loop.finish(), tasks_of(run.events))
        switches.append(switch)
        failed = sum(1 for r in switch.requests if not r.ok)
        print(f"  switch {number + 1} -> {bundle.name}: new model answering after "
              f"{switch.to_new_model:.2f} s, playbook {switch.wall:.2f} s, phases "
              f"{switch.phases}, {failed} failed")  # fmt: skip
    return switches


def summary_line(name: str, requests_: Sequence[Request]) -> str:
    stats = Stats.of([r.latency for r in requests_ if r.ok])
    failed = sum(1 for r in requests_ if not r.ok)
    return (f"  {name}: {stats.n} ok, {failed} failed; avg {seconds(stats.avg)}, "
            f"p50 {seconds(stats.p50)}, p99 {seconds(stats.p99)}")  # fmt: skip


def measure_floor(work: Path) -> PathResult:
    from edgecast_harness.ports import free_port

    port = free_port()
    argv = [sys.executable, str(BENCH / "predictor_floor.py"), "--port", str(port)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/readyz", timeout=5).ok:
                    break
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the floor server did not start")
            time.sleep(0.1)
        before = load_average()
        steady = run_loop(url, work, "floor")
        print(summary_line("floor (bare Flask + waitress)", steady))
        return PathResult("floor", "none", steady, load_before=before, load_after=load_average())
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_local(work: Path, bundles: list[Path], switches: int) -> PathResult:
    from edgecast_harness.playbook import run_playbook
    from edgecast_harness.ports import free_port
    from edgecast_harness.predictor import edgecast

    port = free_port()
    extra = ["-e", f"edgecast_var={work / 'var'}", "-e", f"local_runtime_port={port}"]
    begun = time.monotonic()
    run_playbook("site.yml", *extra, "-e", f"model_training_bundle={bundles[0]}")
    setup = {"site.yml": time.monotonic() - begun}
    url = f"http://127.0.0.1:{port}"
    try:
        before = load_average()
        steady = run_loop(url, work, "local-steady")
        print(summary_line("embedded default, steady", steady))
        swapped = run_switches(url, work, bundles, switches, extra, "local")
        runtime = next((r.runtime for r in steady if r.runtime), "?")
        return PathResult("local", runtime, steady, swapped, before, load_average(), setup)
    finally:
        edgecast("service", "stop", "--pid-file", str(work / "var/run/predictor.pid"), check=False)


def measure_cluster(
    work: Path, bundles: list[Path], switches: int, image: str | None
) -> PathResult:
    """Cluster, image, first deployment and namespace as ``cluster_rollout_bench.py`` makes them;
    all removed at the end (the cluster stopped only if this run started it)."""
    from edgecast_harness.cluster import SharedCluster, edge_inventory
    from edgecast_harness.docker import base_image, docker
    from edgecast_harness.images import BUILD_STAGE_LABEL
    from edgecast_harness.playbook import run_playbook

    for name in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG"):  # only the kubeconfigs passed count
        os.environ.pop(name, None)
    shared = SharedCluster()
    begun = time.monotonic()
    cluster = shared.start()
    setup = {"cluster start": time.monotonic() - begun}
    node = str(cluster.core().list_node().items[0].metadata.name)
    suffix = secrets.token_hex(4)
    namespace = f"edgecast-paper-{suffix}"
    ref = image or f"edgecast-predictor:paper-bench-{suffix}"
    store = Path(f"/var/lib/edgecast-paper-{suffix}") / "models"
    inventory = work / "inventory.yml"
    inventory.write_text(json.dumps(edge_inventory(node, namespace, store, work, "0" * 40)))
    kubeconfig = work / "rollout.kubeconfig"
    try:
        if not image:
            base_image("amd64")
            begun = time.monotonic()
            run_playbook("playbooks/predictor-image.yml", "-i", str(inventory),
                         "-e", f"predictor_image_tag={ref.split(':', 1)[1]}")  # fmt: skip
            setup["image build"] = time.monotonic() - begun
        begun = time.monotonic()
        run_playbook("playbooks/deploy-predictor.yml", "-i", str(inventory),
            "-e", f"predictor_deploy_kubeconfig={cluster.kubeconfig}",
            "-e", f"predictor_deploy_rollout_kubeconfig={kubeconfig}",
            "-e", f"predictor_deploy_bundle={bundles[0]}",
            "-e", f"predictor_deploy_image={ref}")  # fmt: skip
        setup["first deployment"] = time.monotonic() - begun
        service = cluster.core().read_namespaced_service(f"predictor-{node}", namespace)
        cluster.wait_proxied(service.spec.cluster_ip, 8080)
        url = f"http://{service.spec.cluster_ip}:8080"
        before = load_average()
        steady = run_loop(url, work, "cluster-steady")
        print(summary_line("k8s pod, steady", steady))
        rollout = ["-i", str(inventory), "-e", f"model_rollout_kubeconfig={kubeconfig}"]
        switched = run_switches(url, work, bundles, switches, rollout, "cluster")
        runtime = next((r.runtime for r in steady if r.runtime), "?")
        return PathResult("cluster", runtime, steady, switched, before, load_average(), setup)
    finally:
        cluster.delete_namespace(namespace)
        shutil.rmtree(store.parent, ignore_errors=True)
        if not image:
            docker("image", "rm", ref, check=False)
            docker("image", "prune", "--force", "--filter",
                   f"label={BUILD_STAGE_LABEL}={ref}", check=False)  # fmt: skip
        shared.stop()


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
         if line.startswith("model name")), platform.processor() or "?",
    )  # fmt: skip
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    memory = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )  # fmt: skip
    found = []
    for kind in ("--vm", "--container"):
        detect = subprocess.run(["systemd-detect-virt", kind], capture_output=True, text=True)
        if detect.returncode == 0 and detect.stdout.strip() != "none":
            found.append(f"{detect.stdout.strip()} ({kind[2:]})")
    if not found and " hypervisor" in flags:
        found.append("a hypervisor (the CPU's flags say so)")
    virt = ", ".join(found) or "none detected"
    return {
        "cpu": model,
        "architecture": platform.machine(),
        "cores (nproc)": str(len(os.sched_getaffinity(0))),
        "memory": f"{int(memory) / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "virtualisation (systemd-detect-virt)": virt,
        "python": platform.python_version(),
    }


# ---------------------------------------------------------------- results on disk


def to_json(results: dict[str, Any]) -> str:
    def default(value: object) -> object:
        if isinstance(value, PathResult | Switch | Request):
            return asdict(value)
        raise TypeError(type(value))

    return json.dumps(results, default=default, indent=1)


def from_json(text: str) -> dict[str, Any]:
    raw = json.loads(text)

    def path_result(data: dict[str, Any]) -> PathResult:
        steady = [Request(**r) for r in data.pop("steady")]
        switches = [
            Switch(**{**s, "requests": [Request(**r) for r in s["requests"]],
                      "tasks": [Task(**t) for t in s.get("tasks", [])]})
            for s in data.pop("switches")
        ]  # fmt: skip
        return PathResult(steady=steady, switches=switches, **data)

    raw["paths"] = {name: path_result(data) for name, data in raw["paths"].items()}
    return raw


# ---------------------------------------------------------------- the page


def ok_latencies(requests_: Sequence[Request]) -> list[float]:
    return [r.latency for r in requests_ if r.ok]


def during_switches(result: PathResult) -> list[Request]:
    return [r for s in result.switches for r in overlapping(s.requests, s.started, s.finished)]


def latency_rows(results: dict[str, PathResult]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, result in results.items():
        label = "floor: bare Flask + waitress" if name == "floor" else PATHS[name]
        sets = [("steady state", result.steady)]
        if result.switches:
            sets += [
                ("loops across the switches", [r for s in result.switches for r in s.requests]),
                ("in flight during a switch", during_switches(result)),
            ]
        for what, requests_ in sets:
            stats = Stats.of(ok_latencies(requests_))
            failed = sum(1 for r in requests_ if not r.ok)
            rows.append([f"{label} ({result.runtime})", what, stats.n, failed,
                         seconds(stats.avg), seconds(stats.p50), seconds(stats.p99),
                         seconds(stats.max)])  # fmt: skip
    for device, (avg, p99) in PAPER["inference"].items():
        rows.append([f"paper: {device}", "steady state", 62, "", seconds(avg), "",
                     seconds(p99), ""])  # fmt: skip
    return rows


def switch_rows(results: dict[str, PathResult]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, result in results.items():
        if not result.switches:
            continue
        to_new = Stats.of([s.to_new_model for s in result.switches])
        wall = Stats.of([s.wall for s in result.switches])
        rows.append([PATHS[name], "playbook start → new model answers the loop", to_new.n,
                     seconds(to_new.avg), seconds(to_new.p99), seconds(to_new.max)])  # fmt: skip
        rows.append([PATHS[name], "playbook wall time (transfer and switch)", wall.n,
                     seconds(wall.avg), seconds(wall.p99), seconds(wall.max)])  # fmt: skip
    for device, (avg, p99) in PAPER["switching"].items():
        rows.append([f"paper: {device}", "model switching", "", seconds(avg), seconds(p99), ""])
    return rows


STARTUP = "Ansible start-up (to the first task)"
BETWEEN = "Ansible between tasks"
SWITCH_STARTUP = "switch task: plugin start-up"
AFTER = "after the switch task (report, play end)"
OTHER_TASKS = "other tasks"
TASK_SHOWN_S = 0.3  # tasks shorter than this (median) are summed as "other tasks"


def phase_parts(switch: Switch, where: str) -> dict[str, float]:
    """The switch's wall time split into parts that add up to it: Ansible's start, each task
    before the switch, the time between tasks, the switch task's own reported phases, and what
    follows it. Without task times, everything before the switch phases is one part."""
    names = SWAP_PHASES if where == "local" else (*POD_PHASES, "cleanup")
    phases = {f"switch: {n}": switch.phases[n] for n in names if n in switch.phases}
    task = next((t for t in switch.tasks if t.switch), None)
    if task is None:
        before = "before the switch phases (Ansible, verify, transfer)"
        parts = {before: switch.wall - sum(phases.values())}
        return parts | phases
    parts = {STARTUP: switch.tasks[0].start - switch.started}
    earlier = [t for t in switch.tasks if t.end <= task.start]
    for other in earlier:
        parts[other.name] = parts.get(other.name, 0.0) + other.duration
    parts[BETWEEN] = task.start - switch.tasks[0].start - sum(t.duration for t in earlier)
    parts[SWITCH_STARTUP] = task.duration - sum(phases.values())
    return parts | phases | {AFTER: switch.finished - task.end}


def median_parts(result: PathResult) -> dict[str, tuple[float, float, float]]:
    """Median, min and max of each part over the switches; short tasks summed together."""
    per_switch = [phase_parts(s, result.where) for s in result.switches]
    names = list(dict.fromkeys(name for parts in per_switch for name in parts))
    fixed = {STARTUP, BETWEEN, SWITCH_STARTUP, AFTER}

    def shown(name: str) -> bool:
        values = [parts.get(name, 0.0) for parts in per_switch]
        return (
            name in fixed
            or name.startswith(("switch: ", "before the switch"))
            or (float(np.median(values)) >= TASK_SHOWN_S)
        )

    merged = []
    for parts in per_switch:
        kept = {name: parts.get(name, 0.0) for name in names if shown(name)}
        rest = sum(value for name, value in parts.items() if not shown(name))
        if any(not shown(name) for name in names):
            position = list(kept).index(BETWEEN) if BETWEEN in kept else len(kept)
            items = list(kept.items())
            items.insert(position, (OTHER_TASKS, rest))
            kept = dict(items)
        merged.append(kept)
    return {
        name: (
            float(np.median([m[name] for m in merged])),
            min(m[name] for m in merged),
            max(m[name] for m in merged),
        )
        for name in merged[0]
    }


def phase_rows(results: dict[str, PathResult]) -> list[list[object]]:
    rows: list[list[object]] = []
    for name, result in results.items():
        if not result.switches:
            continue
        for part, (median, low, high) in median_parts(result).items():
            rows.append([PATHS[name], part, seconds(median),
                         f"{seconds(low)} to {seconds(high)}"])  # fmt: skip
    return rows


def write_page(results: dict[str, Any], out: Path) -> None:
    paths: dict[str, PathResult] = results["paths"]
    measured = {k: v for k, v in paths.items() if k != "floor"}
    machine_rows = [[k, v] for k, v in results["machine"].items()]
    machine_rows += [[f"load average (1, 5, 15 min) before / after: {PATHS.get(k, k)}",
                      f"{v.load_before} / {v.load_after}"] for k, v in paths.items()]  # fmt: skip
    switch_count = {k: len(v.switches) for k, v in measured.items()}
    per_switch = [
        [PATHS[k], i + 1, s.model_id, seconds(s.to_new_model), seconds(s.wall),
         sum(1 for r in s.requests if not r.ok)]
        for k, v in measured.items() for i, s in enumerate(v.switches)
    ]  # fmt: skip
    setup = [
        [PATHS[k], step, seconds(t)] for k, v in measured.items() for step, t in v.setup.items()
    ]
    latency_table = markdown_table(
        ["path (runtime)", "requests", "n", "failed", "avg", "p50", "p99", "max"],
        latency_rows(paths),
    )
    per_switch_table = markdown_table(
        ["path", "switch", "new model", "to new model answering", "playbook", "failed in loop"],
        per_switch,
    )
    failures = results.get("failures", {})
    missing = [PATHS[k] for k in PATHS if k not in measured and k not in failures]
    failed_paths = "".join(
        f" The {PATHS.get(k, k)} part failed this time: {reason}" for k, reason in failures.items()
    )
    text = f"""# The paper's experiments on this machine

Generated by `bench/paper.py` on {results["date"]}; do not edit by hand. Command line:

```sh
{results["command"]}
```

What was run: {", ".join(f"{PATHS[k]} ({n} switches)" for k, n in switch_count.items())}, and the
floor.{" Not run this time: " + ", ".join(missing) + "." if missing else ""}{failed_paths}

## The protocol, as the paper describes it

Pääkkönen et al., *Architecture for Enabling Edge Inference via Model Transfer from Cloud Domain
in a Kubernetes Environment*, Future Internet 13 (2021) 5, Appendix B:

> A wget() loop was used for getting predictions (predictions for ~2.6 days; 62 hourly
> predictions). Each request consisted of 600 data points (~3 weeks of input data). The loop
> slept 1 s after completion of a request.

and for model switching:

> A loop was started, which transferred a new weight file to the edge-node once per minute (by
> utilising ExternalWeightFileService in Figure 5). Another loop was started for requesting
> predictions (similar loop as step 4 in the prediction inference tests). Latencies of both
> loops were extracted into a text file based on the terminal output.

The paper defines it no further; its model-switching latency reads as the latency of the loop
that transfers a weight file and has the predictors switch to it, that is from the command that
starts a switch to the new model serving. Here:

- **inference latency**: the same loop ({REQUESTS} requests of {WINDOW} real hourly loads of
  building b13, 1 s sleep after each answer, a new connection per request as wget opens one),
  from a client process on the same machine; client-side wall time of each request;
- **switching latency**: from the start of `ansible-playbook rollout-model.yml` (verification,
  transfer into the node's store, switch) to the end of the first request of the loop answered
  by the new model. The loop asks about once a second, so this is exact to about one second;
  the playbook's own wall time (the paper's "latency of the transfer loop" read literally) is
  beside it. Each switch starts after the loop's {SWITCH_AFTER}th answer; one loop per switch
  (a loop of 62 requests lasts about a minute, the paper's switching period).
- **average and p99**: the mean, and the 99th percentile interpolated linearly between ranks
  (numpy's default): of 62 values it lies between the two largest, so it is close to the
  maximum; over {max(switch_count.values(), default=0)} switches it is nearly the maximum.

## This machine is not a Jetson Nano or a Raspberry Pi 4

{markdown_table(["", ""], machine_rows)}
The paper's edge nodes were a Jetson Nano (4 ARM Cortex-A57 cores at 1.43 GHz, a 128-core
Maxwell GPU, 4 GB shared memory) and a Raspberry Pi 4 (4 ARM Cortex-A72 cores at 1.5 GHz, 4 GB),
running TensorFlow 1.14 and 1.15 with Keras 2.2 in Docker on k3s 1.18. This is an x86_64 virtual
machine whose cores are shared with other work (the load averages above were measured while
tests of other changes ran; a load near or above the core count means the client, the predictor
and other processes queued for the CPUs). So:

- the figures compare **the procedure** (the same loop, the same request size, a real rollout
  by the real playbook), not the hardware: a server-class x86 core is faster than a
  Cortex-A57/A72 core, and nothing here says how fast the boards would be;
- the paper does not say what its 7.7 to 10 s per request were spent on; this predictor keeps
  its model loaded and answers from memory (a forecast costs milliseconds of CPU here), so the
  difference of three orders of magnitude cannot be read as a hardware ratio;
- the paper's 26 to 39 s of switching included transferring a weight file to the board and
  loading it into a predictor there; here the transfer is a copy on the same machine and
  Ansible's own start-up is a large share (see the parts below); on a board reached over a
  network both grow;
- timings on aarch64 are not measured here (the project runs aarch64 code only under qemu,
  whose timings mean nothing).

## Inference latency

Client-side wall time per request ({REQUESTS} requests a loop; "loops across the switches" are
all requests of the switch loops, "in flight during a switch" those overlapping the playbook's
run).

{latency_table}
## Switching latency

The loop asks about once a second, so the new model's first answer to it comes up to a second
after the switch itself, and may come after the end of the playbook (hot swap). On the pod switch
the new model answers long before the playbook ends: the old pod's drain and removal come after.

{markdown_table(["path", "measure", "switches", "avg", "p99", "max"], switch_rows(paths))}
Per switch:

{per_switch_table}
## Where the switching time goes

Medians over the switches of the parts of `rollout-model.yml`'s wall time: Ansible's start,
the tasks before the switch as ansible-runner's events time them (tasks under
{TASK_SHOWN_S} s summed), the time between tasks, then the switch task: its plugin's start and
the phases it reports (the hot swap `swap` and `verify`, the pod switch its own; the pod switch's
`drain` and `cleanup` come after the new model already answers), and what follows it.

{markdown_table(["path", "part", "median", "range"], phase_rows(paths))}
Set-up, not part of any figure above:

{markdown_table(["path", "step", "time"], setup)}
## Figures

![latency over time across switches](bench-latency-switch.png)

![switch phases](bench-switch-phases.png)

![latency distribution beside the floor](bench-latency-distribution.png)
"""
    out.write_text(text)


# ---------------------------------------------------------------- figures


def save_figure(figure: Figure, out: Path) -> Path:
    """The figure as a 128-colour PNG, replacing ``out`` only once complete."""
    canvas = figure.canvas
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    image = Image.fromarray(pixels).convert("RGB").quantize(colors=128)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            image.save(stream, format="PNG", optimize=True)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return out


PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


def plain_log_axis(axis: Any) -> None:
    axis.set_major_formatter(PLAIN)
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_switches(paths: dict[str, PathResult], out: Path) -> Path:
    measured = [(k, v) for k, v in paths.items() if k != "floor" and v.switches]
    figure = new_figure(10, 3.4 * max(1, len(measured)))
    for row, (name, result) in enumerate(measured):
        axes = figure.add_subplot(len(measured), 1, row + 1)
        colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
        for number, switch in enumerate(result.switches):
            colour = colours[number % len(colours)]
            old = [r for r in switch.requests if r.ok and r.model_id != switch.model_id]
            new = [r for r in switch.requests if r.ok and r.model_id == switch.model_id]
            for group, marker, label in ((old, "o", "old model"), (new, "^", "new model")):
                axes.plot([r.start - switch.started for r in group],
                          [r.latency * 1000 for r in group], marker, color=colour,
                          markersize=3.5, fillstyle="none" if marker == "o" else "full",
                          label=f"switch {number + 1}: {label}")  # fmt: skip
            axes.axvspan(0, switch.wall, color=colour, alpha=0.07)
            axes.axvline(switch.to_new_model, color=colour, linestyle=":", linewidth=1)
        axes.axvline(0, color="black", linewidth=1)
        axes.set_yscale("log")
        plain_log_axis(axes.yaxis)
        axes.set_xlabel("seconds from the start of rollout-model.yml (shaded: playbook running; "
                        "dotted: first answer by the new model)")  # fmt: skip
        axes.set_ylabel("request latency (ms)")
        axes.set_title(f"{PATHS[name]} ({result.runtime}): the paper's loop across each switch",
                       fontsize=10, loc="left")  # fmt: skip
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, ncols=2, loc="upper right")
    return save_figure(figure, out)


def plot_phases(paths: dict[str, PathResult], out: Path) -> Path:
    measured = [(k, v) for k, v in paths.items() if k != "floor" and v.switches]
    figure = new_figure(10, 1.2 + 1.1 * max(1, len(measured)))
    axes = figure.add_subplot()
    palette = [colormaps["tab20"](i) for i in range(20)]
    names: list[str] = []
    for y, (_, result) in enumerate(measured):
        left = 0.0
        for part, (value, _, _) in median_parts(result).items():
            label = None if part in names else part
            if label:
                names.append(part)
            colour = palette[names.index(part) % len(palette)]
            axes.barh(y, value, left=left, color=colour, edgecolor="white", label=label)
            if value > 1.0:
                axes.text(left + value / 2, y, f"{value:.1f}", ha="center", va="center",
                          fontsize=7, color="black")  # fmt: skip
            left += value
        served = float(np.median([s.to_new_model for s in result.switches]))
        axes.plot([served], [y], marker="v", color="black", markersize=9,
                  label="new model answers (median)" if y == 0 else None)  # fmt: skip
    axes.set_yticks(range(len(measured)), [f"{PATHS[k]}\n({v.runtime})" for k, v in measured])
    axes.set_xlabel("seconds from the start of rollout-model.yml (medians over the switches)")
    axes.set_title("Where a switch's time goes", fontsize=10, loc="left")
    axes.grid(alpha=0.3, axis="x")
    figure.legend(loc="outside lower center", ncols=4, fontsize=7, frameon=False)
    return save_figure(figure, out)


def plot_distribution(paths: dict[str, PathResult], out: Path) -> Path:
    figure = new_figure(10, 4)
    axes = figure.add_subplot()
    styles = {"floor": "grey", "local": "tab:blue", "cluster": "tab:orange"}
    for name, result in paths.items():
        values = np.sort(ok_latencies(result.steady)) * 1000
        if not len(values):
            continue
        label = "floor: bare Flask + waitress" if name == "floor" else PATHS[name]
        stats = Stats.of(list(values / 1000))
        axes.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                  color=styles[name], label=f"{label} ({result.runtime}): avg "
                  f"{seconds(stats.avg)}, p99 {seconds(stats.p99)}")  # fmt: skip
    axes.set_xscale("log")
    plain_log_axis(axes.xaxis)
    axes.set_xlabel("request latency (ms), the paper's loop in steady state")
    axes.set_ylabel("fraction of requests")
    axes.set_title(f"Latency distribution, {REQUESTS} requests each (paper: 7.72 s Jetson, "
                   "10.03 s RPi 4 average)", fontsize=10, loc="left")  # fmt: skip
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8, loc="lower right")
    return save_figure(figure, out)


def render(results: dict[str, Any], docs: Path) -> None:
    write_page(results, docs / "benchmarks.md")
    plot_switches(results["paths"], docs / "bench-latency-switch.png")
    plot_phases(results["paths"], docs / "bench-switch-phases.png")
    plot_distribution(results["paths"], docs / "bench-latency-distribution.png")
    print(f"wrote {docs / 'benchmarks.md'} and its figures")


# ---------------------------------------------------------------- entry points


def loop_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the paper's client loop")
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--body", type=Path, help="request body (default: 600 hours of b13)")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--sleep", type=float, default=SLEEP_S)
    args = parser.parse_args(argv)
    body = args.body.read_bytes() if args.body else request_body()
    paper_loop(args.url, args.out, body, args.requests, args.sleep)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["loop"]:
        return loop_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--where", choices=("local", "cluster", "all"), default="local")
    parser.add_argument("--switches", type=int, default=3, help="switches per path")
    parser.add_argument("--bundles", nargs=2, type=Path, help="two bundle folders to alternate")
    parser.add_argument("--image", help="an existing predictor image for the cluster")
    parser.add_argument("--json", type=Path, default=Path("/tmp/edgecast-paper-bench.json"))
    parser.add_argument("--docs", type=Path, default=DOCS, help="where the page and PNGs go")
    parser.add_argument("--render", type=Path, help="write the page from a saved --json only")
    parser.add_argument("--merge", type=Path, help="keep the paths of this saved --json that "
                        "this run does not measure")  # fmt: skip
    args = parser.parse_args(argv)
    if args.render:
        render(from_json(args.render.read_text()), args.docs)
        return 0
    if args.switches < 1:
        parser.error("--switches must be positive")
    from edgecast_harness.bundles import two_bundles

    command = shlex.join([".venv/bin/python", "bench/paper.py", *argv])
    work = Path(tempfile.mkdtemp(prefix="edgecast-paper-bench-"))
    bundles = two_bundles(args.bundles, work)
    print(f"bundles: {', '.join(b.name for b in bundles)}")
    paths: dict[str, PathResult] = {}
    commands = [command]
    if args.merge:
        merged = from_json(args.merge.read_text())
        commands = [c for c in merged["command"].splitlines() if c != command] + commands
        paths |= {k: v for k, v in merged["paths"].items() if k != "floor"}
    steps = {"floor": lambda: measure_floor(work)}
    if args.where in ("local", "all"):
        steps["local"] = lambda: measure_local(work, bundles, args.switches)
    if args.where in ("cluster", "all"):
        steps["cluster"] = lambda: measure_cluster(work, bundles, args.switches, args.image)
    failures: dict[str, str] = {}
    results: dict[str, Any] = {}
    for where, measure in steps.items():
        print(f"{PATHS.get(where, where)}:")
        try:
            paths[where] = measure()
        except Exception as exc:  # the other paths' figures stay worth writing
            failures[where] = str(exc).strip().splitlines()[0][:300] if str(exc) else repr(exc)
            print(f"{where} failed: {exc}", file=sys.stderr)
        results = {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "\n".join(commands),
            "machine": machine(),
            "paths": {k: paths[k] for k in ("floor", "local", "cluster") if k in paths},
            "failures": failures,
        }
        args.json.write_text(to_json(results))  # after every path: a later failure keeps it
    print(f"raw results: {args.json}")
    render(from_json(args.json.read_text()), args.docs)
    failed = sum(1 for p in paths.values() for s in p.switches for r in s.requests if not r.ok)
    return 1 if failed or failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
