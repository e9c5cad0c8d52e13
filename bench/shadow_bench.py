"""What shadow scoring costs the requests it shadows (not a test).

Two real ``edgecast serve`` processes side by side, serving the same model: one plain, one with
``--shadow-model-id`` (the other model forecasting every request off the response path). The
same clients as ``bench/predictor_bench.py`` measure both in alternating rounds (so that the
machine's noise falls on both): one client's p50 and p99, four clients' requests/s and p99. The
goal (issue 14): shadow scoring raises the serving p99 by at most 20 %. Exits non-zero when a
p99 ratio is above 1.2.

``.venv/bin/python bench/shadow_bench.py --store /tmp/bench-store --runtimes litert``
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
from pathlib import Path

from predictor_bench import (
    architecture,
    client_pool,
    ensure_store,
    load_average,
    one_client,
    request_body,
)
from prometheus_client.parser import text_string_to_metric_families

from edgecast_harness.predictor import PredictorLauncher

P99_RATIO_GOAL = 1.2


def shadow_counts(port: int) -> str:
    """The shadow worker's results: forecast and scored, or dropped when it fell behind."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    counts = {
        sample.labels["result"]: int(sample.value)
        for family in text_string_to_metric_families(text)
        if family.name == "edgecast_shadow_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    return ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))


def bench(runtime: str, store: Path, ids: list[str], body: bytes, args: argparse.Namespace) -> bool:
    serving, partner = ids
    print(f"\n== {runtime}: serving {serving}; shadow {partner}")
    with tempfile.TemporaryDirectory(prefix="edgecast-shadow-bench-") as tmp:
        launcher = PredictorLauncher(Path(tmp))
        try:
            common: tuple[str, ...] = ("--model-id", serving, "--runtime", runtime)
            if args.threads is not None:
                common += ("--threads", str(args.threads))
            predictors = {
                "plain": launcher.start(store, *common),
                "shadow": launcher.start(store, *common, "--shadow-model-id", partner),
            }
            figures: dict[str, dict[str, list[float]]] = {
                name: {"p50": [], "p99": [], "rps4": [], "p99_4": []} for name in predictors
            }
            for round_ in range(args.rounds):
                for name, predictor in predictors.items():
                    single = one_client(
                        predictor.pid, predictor.port, body, args.warmup, args.requests
                    )
                    four = client_pool(predictor.pid, predictor.port, body, args)
                    assert single.failed == 0 and four.failed == 0, (single, four)
                    row = figures[name]
                    row["p50"].append(single.p50_ms)
                    row["p99"].append(single.p99_ms)
                    row["rps4"].append(four.requests_per_s)
                    row["p99_4"].append(four.p99_ms)
                    print(
                        f"  round {round_ + 1} {name:6s}: 1 client p50 {single.p50_ms:.2f} ms, "
                        f"p99 {single.p99_ms:.2f} ms; 4 clients {four.requests_per_s:.0f} req/s, "
                        f"p99 {four.p99_ms:.2f} ms"
                    )
            print(f"  shadow requests: {shadow_counts(predictors['shadow'].port)}")
        finally:
            launcher.stop_all()
    median = {
        name: {key: statistics.median(values) for key, values in row.items()}
        for name, row in figures.items()
    }
    plain, shadow = median["plain"], median["shadow"]
    ratios = {key: shadow[key] / plain[key] for key in plain}
    print(f"\n  medians over {args.rounds} rounds (plain, shadow, shadow / plain):")
    for key, label in (
        ("p50", "1 client p50 ms"),
        ("p99", "1 client p99 ms"),
        ("rps4", "4 clients req/s"),
        ("p99_4", "4 clients p99 ms"),
    ):
        print(f"    {label:17s} {plain[key]:9.2f} {shadow[key]:9.2f}   x{ratios[key]:.2f}")
    met = ratios["p99"] <= P99_RATIO_GOAL and ratios["p99_4"] <= P99_RATIO_GOAL
    print(
        f"  goal: p99 at most x{P99_RATIO_GOAL} with shadow scoring: {'met' if met else 'MISSED'}"
    )
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=Path("/tmp/bench-store"))
    parser.add_argument("--runtimes", default="litert,keras")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--duration", type=float, default=5.0, help="4-client run, seconds")
    parser.add_argument("--threads", type=int, help="prediction threads (default: the server's)")
    parser.add_argument("--building", default="b13")
    parser.add_argument("--end", default="2017-12-20 23:00")
    args = parser.parse_args(argv)
    store = args.store.resolve()
    ids = ensure_store(store, args.building)[-2:][::-1]
    body = request_body(args.building, int(architecture(store, ids[0])["window"]), args.end)
    print(f"load average before: {load_average()}")
    met = [
        bench(runtime.strip(), store, ids, body, args)
        for runtime in args.runtimes.split(",")
        if runtime.strip()
    ]
    print(f"\nload average after: {load_average()}")
    return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
