"""Benchmark the edgecast predictor on this machine, for each runtime (not a test).

For every runtime it starts a real ``edgecast serve`` process on 127.0.0.1 and measures:

* cold start: process start to the first ``/readyz`` 200 (and to the first HTTP answer);
* one client: p50/p99 client-side latency of sequential 600-value ``POST /v1/predict``
  requests on one keep-alive connection;
* four clients: four client processes, each with its own keep-alive connection, for a fixed
  duration: requests/s, p50/p99 latency, failed requests;
* the predictor's RSS (VmRSS, and the peak VmHWM) after that load;
* hot swap: ``POST /admin/v1/models`` alternating between two models, with one client
  sending requests all along (none may fail).

Before the runtimes, the same clients measure the floor (``bench/predictor_floor.py``, a bare
Flask app under waitress), and each runtime's latency and throughput are reported as multiples
of it.

Run it with the project's interpreter, e.g.
``.venv/bin/python bench/predictor_bench.py --store /tmp/bench-store --json /tmp/bench.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from edgecast_harness.ports import free_port
from edgecast_harness.predictor import Predictor, PredictorLauncher

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO / "data" / "cambridge-estates"
READY_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 30.0
ADMIN_TIMEOUT_S = 120.0
CLIENTS = 4
MODEL_ID_PREFIX = "sbn-"

GOALS = {
    "p50_ms": 5.0,  # one client, below
    "p99_ms": 20.0,  # one client, below
    "rps_4_clients": 200.0,  # above
    "hot_swap_s": 1.0,  # worst admin call, below
    "failed": 0,  # exactly
}
# Each runtime against the floor measured in the same run (bench/predictor_floor.py): one client's
# p50 and p99 at most, and 4 clients' requests/s at least, these multiples of the floor's.
RATIO_GOALS = {
    "litert": {"p50": 1.3, "p99": 2.0, "rps": 0.75},
    "keras": {"p50": 1.6, "p99": 2.0, "rps": 0.5},
}
# Each runtime's own: the median admin swap (load, parity gate, swap) at most, in seconds; and
# the predictor's RSS after the 4-client load at most, in MiB (keras, which holds TensorFlow, is
# reported only).
SWAP_MEDIAN_GOAL_S = {"litert": 0.1, "keras": 0.3}
RSS_GOAL_MIB = {"litert": 120.0}
FLOOR_SCRIPT = REPO / "bench" / "predictor_floor.py"


# ---------------------------------------------------------------------------------------------
# Figures


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class LoadFigures:
    clients: int
    ok: int
    failed: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    requests_per_s: float
    server_cpu_ms_per_req: float  # predictor process CPU time (user+sys) per answered request
    client_cpu_ms_per_req: float  # the client processes' CPU time per request
    errors: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        clients: int,
        latencies_ms: Sequence[float],
        failed: int,
        seconds: float,
        errors: Sequence[str],
        server_cpu_s: float,
        client_cpu_s: float,
    ) -> LoadFigures:
        done = len(latencies_ms) + failed
        return cls(
            clients=clients,
            ok=len(latencies_ms),
            failed=failed,
            seconds=round(seconds, 3),
            p50_ms=round(percentile(latencies_ms, 50), 3),
            p90_ms=round(percentile(latencies_ms, 90), 3),
            p99_ms=round(percentile(latencies_ms, 99), 3),
            max_ms=round(max(latencies_ms, default=math.nan), 3),
            mean_ms=round(statistics.fmean(latencies_ms), 3) if latencies_ms else math.nan,
            requests_per_s=round(len(latencies_ms) / seconds, 1) if seconds > 0 else 0.0,
            server_cpu_ms_per_req=round(server_cpu_s * 1000 / done, 3) if done else math.nan,
            client_cpu_ms_per_req=round(client_cpu_s * 1000 / done, 3) if done else math.nan,
            errors=list(errors)[:5],
        )


@dataclass
class SwapFigures:
    swaps: int
    ok: int
    wall_median_s: float
    wall_max_s: float
    load_seconds_median: float
    load_seconds_max: float
    walls_s: list[float]
    load_seconds: list[float]
    errors: list[str]
    during: LoadFigures


@dataclass
class RuntimeFigures:
    runtime: str
    model_ids: list[str]
    cold_start_s: float
    first_answer_s: float
    initial_load_seconds: float
    rss_ready_mb: float
    one_client: LoadFigures
    four_clients: LoadFigures
    rss_after_load_mb: float
    hwm_after_load_mb: float
    hot_swap: SwapFigures
    rss_after_swaps_mb: float
    exit_code: int | None
    metrics_scrapes: tuple[int, int] = (0, 0)  # (answered, failed) with --scrape-metrics
    ratios: dict[str, float] = field(default_factory=dict)  # to the floor of the same run

    def compare(self, floor: FloorFigures) -> None:
        """Records this runtime's figures as multiples of the floor's."""
        self.ratios = {
            "p50": round(self.one_client.p50_ms / floor.one_client.p50_ms, 3),
            "p99": round(self.one_client.p99_ms / floor.one_client.p99_ms, 3),
            "rps": round(self.four_clients.requests_per_s / floor.four_clients.requests_per_s, 3),
        }

    @property
    def failed(self) -> int:
        return (
            self.one_client.failed
            + self.four_clients.failed
            + self.hot_swap.during.failed
            + (self.hot_swap.swaps - self.hot_swap.ok)
            + self.metrics_scrapes[1]
        )

    def verdicts(self) -> dict[str, bool]:
        verdicts = {
            "p50": self.one_client.p50_ms < GOALS["p50_ms"],
            "p99": self.one_client.p99_ms < GOALS["p99_ms"],
            "rps": self.four_clients.requests_per_s > GOALS["rps_4_clients"],
            "swap": self.hot_swap.wall_max_s < GOALS["hot_swap_s"],
            "failed": self.failed == GOALS["failed"],
        }
        verdicts["swap median"] = self.hot_swap.wall_median_s <= SWAP_MEDIAN_GOAL_S[self.runtime]
        if self.runtime in RSS_GOAL_MIB:
            verdicts["rss"] = self.rss_after_load_mb <= RSS_GOAL_MIB[self.runtime]
        if self.ratios:
            goals = RATIO_GOALS[self.runtime]
            verdicts["p50/floor"] = self.ratios["p50"] <= goals["p50"]
            verdicts["p99/floor"] = self.ratios["p99"] <= goals["p99"]
            verdicts["rps/floor"] = self.ratios["rps"] >= goals["rps"]
        return verdicts


@dataclass
class FloorFigures:
    one_client: LoadFigures
    four_clients: LoadFigures


# ---------------------------------------------------------------------------------------------
# HTTP client (runs in this process and in the client processes)


class Client:
    """One keep-alive HTTP/1.1 connection sending the same prediction request."""

    def __init__(self, port: int, body: bytes) -> None:
        self.port = port
        self.body = body
        self.headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        self.latencies_ms: list[float] = []
        self.failed = 0
        self.errors: list[str] = []

    def once(self) -> bool:
        """Sends one request; records its wall time in ms if it succeeded (HTTP 200)."""
        started = time.perf_counter()
        try:
            self.conn.request("POST", "/v1/predict", body=self.body, headers=self.headers)
            response = self.conn.getresponse()
            payload = response.read()
            elapsed_ms = (time.perf_counter() - started) * 1000
            if response.status == 200:
                self.latencies_ms.append(elapsed_ms)
                return True
            self._fail(f"HTTP {response.status}: {payload[:200]!r}")
            if response.will_close:
                self._reconnect()
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            self._reconnect()
        return False

    def _fail(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(message)

    def _reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_S)

    def reset(self) -> None:
        """Forgets the figures (after warm-up), keeps the connection."""
        self.latencies_ms = []
        self.failed = 0
        self.errors = []

    def close(self) -> None:
        self.conn.close()


# (client index, latencies in ms of the answered requests, failed, seconds, CPU seconds, errors)
ClientResult = tuple[int, list[float], int, float, float, list[str]]


def client_process(
    index: int,
    port: int,
    body: bytes,
    warmup: int,
    max_seconds: float,
    ready: Queue[int],
    go: EventType,
    stop: EventType,
    results: Queue[ClientResult],
) -> None:
    """A client process: warm up, wait for ``go``, send until ``stop`` or ``max_seconds``."""
    client = Client(port, body)
    for _ in range(warmup):
        client.once()
    client.reset()
    ready.put(index)
    if not go.wait(timeout=120):
        results.put((index, [], 0, 0.0, 0.0, ["never started: no go signal"]))
        return
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + max_seconds
    while not stop.is_set() and time.perf_counter() < deadline:
        client.once()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    client.close()
    results.put((index, client.latencies_ms, client.failed, elapsed, cpu, client.errors))


def scrape_process(port: int, hz: float, stop: EventType, results: Queue[tuple[int, int]]) -> None:
    """GET /metrics every 1/hz s on a connection of its own until ``stop``; (scrapes, failed)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    done = failed = 0
    while not stop.wait(1.0 / hz):
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            response.read()
            done += 1
            failed += response.status != 200
        except (OSError, http.client.HTTPException):
            failed += 1
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    results.put((done, failed))


class MetricsScraper:
    """A Prometheus-like scraper of the predictor's /metrics at ``hz``, in a process of its own
    (its CPU is neither the client's nor the server's)."""

    def __init__(self, port: int, hz: float) -> None:
        ctx = mp.get_context("spawn")
        self.stop = ctx.Event()
        self.results: Queue[tuple[int, int]] = ctx.Queue()
        self.process = ctx.Process(
            target=scrape_process, args=(port, hz, self.stop, self.results), daemon=True
        )

    def start(self) -> None:
        self.process.start()

    def finish(self) -> tuple[int, int]:
        """Stops the scraper: (scrapes answered, failed)."""
        self.stop.set()
        figures = self.results.get(timeout=30)
        self.process.join(10)
        return figures

    def kill(self) -> None:
        """Ends the scraper if it is still running (after an error)."""
        if self.process.is_alive():
            self.process.kill()


class ClientPool:
    """``n`` client processes (spawned, each with its own connection) started together."""

    def __init__(
        self, n: int, server_pid: int, port: int, body: bytes, warmup: int, max_seconds: float
    ) -> None:
        ctx = mp.get_context("spawn")
        self.n = n
        self.server_pid = server_pid
        self.server_cpu = 0.0
        self.max_seconds = max_seconds
        self.ready: Queue[int] = ctx.Queue()
        self.results: Queue[ClientResult] = ctx.Queue()
        self.go = ctx.Event()
        self.stop = ctx.Event()
        self.channels = (self.ready, self.go, self.stop, self.results)
        self.processes = [
            ctx.Process(
                target=client_process,
                args=(i, port, body, warmup, max_seconds, *self.channels),
                daemon=True,
            )
            for i in range(n)
        ]

    def start(self) -> None:
        """Starts the processes, waits for each to be warmed up, then lets them all go."""
        for process in self.processes:
            process.start()
        for _ in range(self.n):
            self.ready.get(timeout=120)
        self.server_cpu = cpu_seconds(self.server_pid)
        self.go.set()

    def finish(self, stop: bool) -> LoadFigures:
        """Gathers the clients' figures; ``stop``: end them now, else they run their time."""
        if stop:
            self.stop.set()
        latencies: list[float] = []
        failed, seconds, client_cpu, errors = 0, 0.0, 0.0, []
        for _ in range(self.n):
            _, lat, fail, elapsed, cpu, errs = self.results.get(timeout=self.max_seconds + 120)
            latencies += lat
            failed += fail
            seconds = max(seconds, elapsed)
            client_cpu += cpu
            errors += errs
        server_cpu = cpu_seconds(self.server_pid) - self.server_cpu
        for process in self.processes:
            process.join(timeout=30)
        return LoadFigures.of(self.n, latencies, failed, seconds, errors, server_cpu, client_cpu)

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join(timeout=10)


# ---------------------------------------------------------------------------------------------
# The predictor process


def http_json(
    port: int,
    method: str,
    path: str,
    body: dict[str, object] | None = None,
    token: str | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """One request on a fresh connection; (status, decoded JSON or text)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = round(int(value.split()[0]) / 1024, 1)
    return figures


def start_predictor(
    launcher: PredictorLauncher, store: Path, model_id: str, runtime: str, threads: int | None
) -> tuple[Predictor, float, float]:
    """Starts ``edgecast serve`` with the admin API on; returns it, the seconds to its first
    HTTP answer and the seconds until it is ready (model loaded, parity gate passed)."""
    extra = ["--threads", str(threads)] if threads is not None else []
    started = time.perf_counter()
    predictor = launcher.start(
        store, "--model-id", model_id, "--runtime", runtime, *extra, admin=True, wait=False
    )
    first_answer = math.nan
    while time.perf_counter() < started + READY_TIMEOUT_S:
        if predictor.process.poll() is not None:
            raise RuntimeError(
                f"the predictor exited with {predictor.process.returncode}:\n{predictor.log_tail()}"
            )
        try:
            status, answer = http_json(predictor.port, "GET", "/readyz", timeout=2.0)
        except OSError:
            status, answer = 0, None
        reason = str(answer.get("reason", "")) if isinstance(answer, dict) else ""
        if reason.startswith("model refused"):  # it will not become ready: say why now
            raise RuntimeError(
                f"the predictor refused its model ({reason}); bundles trained by another "
                "edgecast version? Use an empty --store to train new ones."
            )
        now = time.perf_counter() - started
        if status and math.isnan(first_answer):
            first_answer = now
        if status == 200:
            return predictor, first_answer, now
        time.sleep(0.01)
    raise RuntimeError(
        f"the predictor was not ready in {READY_TIMEOUT_S} s:\n{predictor.log_tail()}"
    )


# ---------------------------------------------------------------------------------------------
# Inputs: the model store and the request body


def store_model_ids(store: Path) -> list[str]:
    """Bundles in the store, oldest first (the store's own order)."""
    from edgecast.store import ModelStore

    return ModelStore(store).model_ids()


def ensure_store(store: Path, building: str) -> list[str]:
    """The store's model ids; trains bundles into it first if it holds fewer than two."""
    ids = store_model_ids(store)
    runs = [["--seed", "0"], ["--seed", "1", "--epochs", "4"]][len(ids) :]
    for extra in runs:
        store.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "edgecast.cli", "train", "--building", building]
        command += ["--out", str(store), *extra]
        print(
            f"store {store} holds {len(ids)} bundle(s): training one "
            f"(edgecast train --building {building} {' '.join(extra)}) ...",
            flush=True,
        )
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
        if done.returncode != 0:
            raise SystemExit(f"training failed ({done.returncode}):\n{done.stderr[-3000:]}")
        print(f"  trained in {time.perf_counter() - started:.0f} s: {done.stdout.strip()[-200:]}")
        ids = store_model_ids(store)
    return ids


def architecture(store: Path, model_id: str) -> dict[str, Any]:
    shape: dict[str, Any] = json.loads((store / model_id / "architecture.json").read_text())
    return shape


def request_body(building: str, window: int, end: str) -> bytes:
    """``window`` real hourly loads of a shipped building ending at ``end`` (UTC), as JSON."""
    from edgecast.data import load_building

    frame = load_building(building, DEFAULT_DATA_DIR, weather_station=None)
    loads = frame["load"].loc[:end].interpolate(limit_area="inside").iloc[-window:]
    if len(loads) != window or loads.isna().any():
        raise SystemExit(f"building {building} has no {window} complete hours ending at {end}")
    body = {
        "loads": [float(v) for v in loads],
        "last_timestamp": loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return json.dumps(body).encode()


# ---------------------------------------------------------------------------------------------
# The benchmark


def one_client(server_pid: int, port: int, body: bytes, warmup: int, requests: int) -> LoadFigures:
    client = Client(port, body)
    for _ in range(warmup):
        client.once()
    client.reset()
    server_cpu = cpu_seconds(server_pid)
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        client.once()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    server_cpu = cpu_seconds(server_pid) - server_cpu
    client.close()
    return LoadFigures.of(
        1, client.latencies_ms, client.failed, elapsed, client.errors, server_cpu, cpu
    )


def hot_swaps(
    predictor: Predictor, model_ids: list[str], swaps: int, body: bytes, warmup: int
) -> SwapFigures:
    """Alternates the served model ``swaps`` times while one client process keeps sending."""
    pool = ClientPool(
        1, predictor.pid, predictor.port, body, warmup, max_seconds=swaps * ADMIN_TIMEOUT_S + 60
    )
    walls: list[float] = []
    loads: list[float] = []
    errors: list[str] = []
    try:
        pool.start()
        time.sleep(0.5)  # some traffic before the first swap
        for i in range(swaps):
            target = model_ids[(i + 1) % 2]
            started = time.perf_counter()
            try:
                status, answer = http_json(
                    predictor.port,
                    "POST",
                    "/admin/v1/models",
                    {"model_id": target},
                    token=predictor.token,
                    timeout=ADMIN_TIMEOUT_S,
                )
            except OSError as exc:
                status, answer = 0, f"{type(exc).__name__}: {exc}"
            wall = time.perf_counter() - started
            if status == 200 and isinstance(answer, dict) and answer.get("model_id") == target:
                walls.append(wall)
                loads.append(float(answer["load_seconds"]))
            else:
                errors.append(f"swap {i + 1} to {target}: HTTP {status}: {str(answer)[:200]}")
            time.sleep(0.2)  # let the client see the new model
        during = pool.finish(stop=True)
    finally:
        pool.kill()
    return SwapFigures(
        swaps=swaps,
        ok=len(walls),
        wall_median_s=round(statistics.median(walls), 4) if walls else math.nan,
        wall_max_s=round(max(walls), 4) if walls else math.nan,
        load_seconds_median=round(statistics.median(loads), 4) if loads else math.nan,
        load_seconds_max=round(max(loads), 4) if loads else math.nan,
        walls_s=[round(w, 4) for w in walls],
        load_seconds=[round(s, 4) for s in loads],
        errors=errors,
        during=during,
    )


def bench_floor(body: bytes, args: argparse.Namespace, workdir: Path) -> FloorFigures:
    """The bare Flask + waitress floor, measured by the same clients as the predictor."""
    print("\n== floor: bare Flask app under waitress, 4 threads (bench/predictor_floor.py)")
    port = free_port()
    log = workdir / "floor.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(FLOOR_SCRIPT), "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.perf_counter() + READY_TIMEOUT_S
        while True:
            try:
                if http_json(port, "GET", "/readyz", timeout=2.0)[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.perf_counter() > deadline:
                raise RuntimeError(f"the floor server did not start:\n{log.read_text()}")
            time.sleep(0.05)
        single = one_client(process.pid, port, body, args.warmup, args.requests)
        print(
            f"one client: p50 {single.p50_ms:.2f} ms, p99 {single.p99_ms:.2f} ms, "
            f"{single.requests_per_s:.0f} req/s, failed {single.failed}"
        )
        four = client_pool(process.pid, port, body, args)
        print(
            f"{CLIENTS} clients: {four.requests_per_s:.0f} req/s, p50 {four.p50_ms:.2f} ms, "
            f"p99 {four.p99_ms:.2f} ms, failed {four.failed}"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)
    return FloorFigures(single, four)


def client_pool(pid: int, port: int, body: bytes, args: argparse.Namespace) -> LoadFigures:
    """CLIENTS client processes for ``args.duration`` seconds against the server ``pid``."""
    pool = ClientPool(CLIENTS, pid, port, body, args.warmup // 4, args.duration)
    try:
        pool.start()
        return pool.finish(stop=False)
    finally:
        pool.kill()


def bench_runtime(
    runtime: str,
    store: Path,
    model_ids: list[str],
    body: bytes,
    args: argparse.Namespace,
    workdir: Path,
) -> RuntimeFigures:
    print(f"\n== runtime {runtime}: serving {model_ids[0]} (swap partner {model_ids[1]})")
    launcher = PredictorLauncher(workdir)
    scraper: MetricsScraper | None = None
    try:
        predictor, first_answer, cold = start_predictor(
            launcher, store, model_ids[0], runtime, args.threads
        )
        print(f"cold start: first HTTP answer {first_answer:.2f} s, ready {cold:.2f} s")
        _, model = http_json(predictor.port, "GET", "/v1/model")
        initial_load = float(model["load_seconds"])
        print(f"  model load + parity gate (server-reported): {initial_load:.3f} s")
        status, answer = http_json(predictor.port, "POST", "/v1/predict", json.loads(body))
        if status != 200 or len(answer.get("forecast_kwh", [])) == 0:
            raise RuntimeError(f"the first prediction failed: HTTP {status}: {answer}")
        rss_ready = memory_mb(predictor.pid)["VmRSS"]
        if args.scrape_metrics:
            scraper = MetricsScraper(predictor.port, args.scrape_metrics)
            scraper.start()
            print(f"scraping /metrics at {args.scrape_metrics:g} Hz through all phases")

        print(f"one client: {args.warmup} warm-up, then {args.requests} sequential requests ...")
        single = one_client(predictor.pid, predictor.port, body, args.warmup, args.requests)
        print(
            f"  p50 {single.p50_ms:.2f} ms, p99 {single.p99_ms:.2f} ms, max {single.max_ms:.1f} ms,"
            f" {single.requests_per_s:.0f} req/s, failed {single.failed}; CPU per request: "
            f"server {single.server_cpu_ms_per_req:.2f} ms, "
            f"client {single.client_cpu_ms_per_req:.2f} ms"
        )

        print(f"{CLIENTS} client processes for {args.duration:g} s ...")
        four = client_pool(predictor.pid, predictor.port, body, args)
        print(
            f"  {four.requests_per_s:.0f} req/s, p50 {four.p50_ms:.2f} ms, "
            f"p99 {four.p99_ms:.2f} ms, failed {four.failed}; CPU per request: "
            f"server {four.server_cpu_ms_per_req:.2f} ms, "
            f"clients {four.client_cpu_ms_per_req:.2f} ms"
        )
        mem = memory_mb(predictor.pid)
        print(f"  predictor RSS after the load: {mem['VmRSS']:.0f} MiB (peak {mem['VmHWM']:.0f})")

        print(f"hot swap: {args.swaps} swaps with one client sending ...")
        swap = hot_swaps(predictor, model_ids, args.swaps, body, args.warmup // 4)
        print(
            f"  admin call median {swap.wall_median_s:.3f} s, max {swap.wall_max_s:.3f} s; "
            f"server load_seconds median {swap.load_seconds_median:.3f} s; "
            f"{swap.ok}/{swap.swaps} ok; during swaps: {swap.during.ok} requests, "
            f"p99 {swap.during.p99_ms:.1f} ms, max {swap.during.max_ms:.1f} ms, "
            f"failed {swap.during.failed}"
        )
        for error in swap.errors:
            print(f"  ! {error}")
        rss_swaps = memory_mb(predictor.pid)["VmRSS"]
        print(f"  predictor RSS after the swaps: {rss_swaps:.0f} MiB")
        scrapes = (0, 0)
        if scraper is not None:
            scrapes = scraper.finish()
            print(f"  /metrics scrapes: {scrapes[0]} answered, {scrapes[1]} failed")
    except BaseException:
        for started in launcher.started:
            print(f"predictor log ({started.log_path}):\n{started.log_tail()}", file=sys.stderr)
        raise
    finally:
        if scraper is not None:
            scraper.kill()
        exit_codes = [started.stop() for started in launcher.started]
    exit_code = exit_codes[0]
    return RuntimeFigures(
        runtime=runtime,
        model_ids=model_ids,
        cold_start_s=round(cold, 3),
        first_answer_s=round(first_answer, 3),
        initial_load_seconds=round(initial_load, 4),
        rss_ready_mb=rss_ready,
        one_client=single,
        four_clients=four,
        rss_after_load_mb=mem["VmRSS"],
        hwm_after_load_mb=mem["VmHWM"],
        hot_swap=swap,
        rss_after_swaps_mb=rss_swaps,
        exit_code=exit_code,
        metrics_scrapes=scrapes,
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def finite(value: object) -> object:
    """The report with NaN/inf (figures that could not be measured) as null, for strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def ratio_table(results: list[RuntimeFigures], floor: FloorFigures) -> str:
    """Each runtime as multiples of the floor measured in the same run, beside the goals."""
    lines = [
        f"against the floor (bare Flask + waitress, same run): one client p50 "
        f"{floor.one_client.p50_ms:.2f} ms, p99 {floor.one_client.p99_ms:.2f} ms; "
        f"{CLIENTS} clients {floor.four_clients.requests_per_s:.0f} req/s",
        f"{'runtime':<8} {'p50 x':>8} {'goal':>7} {'p99 x':>8} {'goal':>7} "
        f"{'4c req/s x':>11} {'goal':>7}",
    ]
    for r in results:
        goals, v = RATIO_GOALS[r.runtime], r.verdicts()
        lines.append(
            f"{r.runtime:<8} {r.ratios['p50']:>7.2f}{'' if v['p50/floor'] else '!'} "
            f"{'<= ' + str(goals['p50']):>7} "
            f"{r.ratios['p99']:>7.2f}{'' if v['p99/floor'] else '!'} "
            f"{'<= ' + str(goals['p99']):>7} "
            f"{r.ratios['rps']:>10.2f}{'' if v['rps/floor'] else '!'} "
            f"{'>= ' + str(goals['rps']):>7}"
        )
    return "\n".join(lines)


def table(results: list[RuntimeFigures], args: argparse.Namespace) -> str:
    header = (
        f"{'runtime':<8} {'cold s':>7} {'p50 ms':>7} {'p99 ms':>7} {'4c req/s':>9} "
        f"{'4c p50':>7} {'4c p99':>7} {'RSS MiB':>8} {'swap med':>9} {'swap max':>9} "
        f"{'load s':>7} {'failed':>7}  verdict"
    )
    goal = (
        f"{'goal':<8} {'-':>7} {'< 5':>7} {'< 20':>7} {'> 200':>9} {'-':>7} {'-':>7} "
        f"{'*':>8} {'*':>9} {'< 1':>9} {'-':>7} {'0':>7}"
    )
    lines = [
        f"predictor benchmark: {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"{args.requests} sequential requests, {CLIENTS} clients x {args.duration:g} s, "
        f"{args.swaps} swaps; "
        + (f"/metrics scraped at {args.scrape_metrics:g} Hz; " if args.scrape_metrics else "")
        + f"load average before/after {args.loadavg_before} / "
        f"{load_average()} (other processes skew the figures on a 2-core machine)",
        header,
        goal,
        "-" * len(header),
    ]
    for r in results:
        v = r.verdicts()
        misses = [name for name, ok in v.items() if not ok]
        lines.append(
            f"{r.runtime:<8} {r.cold_start_s:>7.2f} "
            f"{r.one_client.p50_ms:>6.2f}{'' if v['p50'] else '!'} "
            f"{r.one_client.p99_ms:>6.2f}{'' if v['p99'] else '!'} "
            f"{r.four_clients.requests_per_s:>8.0f}{'' if v['rps'] else '!'} "
            f"{r.four_clients.p50_ms:>7.2f} {r.four_clients.p99_ms:>7.2f} "
            f"{r.rss_after_load_mb:>7.0f}{'' if v.get('rss', True) else '!'} "
            f"{r.hot_swap.wall_median_s:>8.3f}{'' if v['swap median'] else '!'} "
            f"{r.hot_swap.wall_max_s:>8.3f}{'' if v['swap'] else '!'} "
            f"{r.hot_swap.load_seconds_median:>7.3f} "
            f"{r.failed:>6d}{'' if v['failed'] else '!'}  "
            f"{'all goals met' if not misses else 'MISS: ' + ', '.join(misses)}"
        )
    lines.append(
        "(cold s: process start to /readyz 200; RSS after the 4-client load; swap: wall time of "
        "POST /admin/v1/models; load s: server-reported load_seconds, median; failed: all "
        "phases incl. during swaps; ! marks a missed goal; * per runtime: "
        + "; ".join(
            f"{name} swap median <= {goal} s"
            + (f", RSS <= {RSS_GOAL_MIB[name]:.0f} MiB" if name in RSS_GOAL_MIB else "")
            for name, goal in SWAP_MEDIAN_GOAL_S.items()
        )
        + ")"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store",
        type=Path,
        default=Path("/tmp/bench-store"),
        help="model store with at least two bundles (trained into it if it holds fewer)",
    )
    parser.add_argument("--runtimes", default="keras,litert", help="comma-separated runtimes")
    parser.add_argument("--model-ids", help="two model ids: served first, swap partner")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests")
    parser.add_argument("--duration", type=float, default=10.0, help="4-client run, seconds")
    parser.add_argument("--swaps", type=int, default=10, help="hot swaps")
    parser.add_argument("--threads", type=int, help="waitress threads (default: the server's)")
    parser.add_argument(
        "--scrape-metrics",
        type=float,
        default=0.0,
        metavar="HZ",
        help="scrape each predictor's /metrics at HZ through all its phases (0: no scraping)",
    )
    parser.add_argument("--building", default="b13", help="building for the request and training")
    parser.add_argument("--end", default="2017-12-20 23:00", help="last hour of the request")
    parser.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    args = parser.parse_args(argv)
    for name in ("requests", "swaps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or not 0 < args.duration <= 600:
        parser.error("--warmup must be >= 0 and --duration in (0, 600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = sorted(set(runtimes) - {"keras", "litert"})
    if unknown or not runtimes:
        raise SystemExit(f"unknown runtime(s) {unknown}; choose from keras,litert")

    store = args.store.resolve()
    ids = ensure_store(store, args.building)
    if args.model_ids:
        model_ids = [m.strip() for m in args.model_ids.split(",")]
        if len(model_ids) != 2 or any(m not in ids for m in model_ids):
            raise SystemExit(f"--model-ids needs two of the store's models: {ids}")
    else:
        model_ids = ids[-2:][::-1]  # the newest serves first
    shapes = [architecture(store, m) for m in model_ids]
    if shapes[0]["window"] != shapes[1]["window"] or any(s["use_temperature"] for s in shapes):
        raise SystemExit(
            f"{model_ids} need the same window and no temperature input; pick with --model-ids"
        )
    body = request_body(args.building, int(shapes[0]["window"]), args.end)
    print(
        f"store {store}: {len(ids)} bundle(s); request: {shapes[0]['window']} loads of "
        f"{args.building} ({len(body)} bytes of JSON)"
    )

    args.loadavg_before = load_average()
    results: list[RuntimeFigures] = []
    with tempfile.TemporaryDirectory(prefix="edgecast-bench-") as tmp:
        floor = bench_floor(body, args, Path(tmp))
        for runtime in runtimes:
            results.append(bench_runtime(runtime, store, model_ids, body, args, Path(tmp)))
    for result in results:
        result.compare(floor)

    print()
    print(table(results, args))
    print()
    print(ratio_table(results, floor))
    if args.json:
        report = {
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_average_before": args.loadavg_before,
                "load_average_after": load_average(),
            },
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "goals": GOALS,
            "ratio_goals": RATIO_GOALS,
            "swap_median_goal_s": SWAP_MEDIAN_GOAL_S,
            "rss_goal_mib": RSS_GOAL_MIB,
            "floor": asdict(floor),
            "runtimes": {
                r.runtime: {**asdict(r), "failed": r.failed, "verdicts": r.verdicts()}
                for r in results
            },
        }
        args.json.write_text(json.dumps(finite(report), indent=2, allow_nan=False) + "\n")
        print(f"figures written to {args.json}")
    return 0 if all(all(r.verdicts().values()) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
