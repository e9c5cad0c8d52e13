"""Steady load on a predictor from a separate process: /v1/predict requests back to back.

    python tests/load_client.py --url http://127.0.0.1:8080 --duration 30 --out requests.jsonl

Writes one JSON line per request, flushed as it goes: ``start`` and ``end`` (``time.time()``),
``status`` (the HTTP status, or null when no response came back), ``model_id`` (from a 200
answer) and ``error`` (what went wrong otherwise). Requests share one keep-alive connection
unless ``--fresh-connections`` is given. The load is bounded: it stops after
``--duration`` seconds, after ``--max-requests`` requests, or on SIGTERM/SIGINT, whichever comes
first. Only the URL given is contacted (meant for 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import requests

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "cambridge-estates"


def default_body(building: str = "b13", end: str = "2017-12-20 23:00") -> dict:
    """600 real hourly loads of a shipped building (the same window as conftest's)."""
    from edgecast.data import load_building

    frame = load_building(building, DATA, weather_station=None)
    loads = frame["load"].loc[:end].iloc[-600:]
    return {
        "loads": [float(v) for v in loads],
        "last_timestamp": loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", required=True, help="predictor base URL, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument("--duration", type=float, required=True, help="seconds to run at most")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to write")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    parser.add_argument("--body", type=Path, help="JSON request body (default: shipped b13 data)")
    parser.add_argument(
        "--fresh-connections",
        action="store_true",
        help="a new TCP connection per request (default: one keep-alive connection)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be in (0, 3600] seconds")
    if args.max_requests < 1:
        parser.error("--max-requests must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    body = json.loads(args.body.read_text()) if args.body else default_body()
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if args.fresh_connections:
        # A client arriving now: kube-proxy picks a backend per connection, so this shows
        # when new clients reach the new pod; a kept-alive connection stays on its pod.
        headers["Connection"] = "close"
    url = args.url.rstrip("/") + "/v1/predict"

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    session = requests.Session()
    deadline = time.monotonic() + args.duration
    sent = 0
    with args.out.open("w") as out:
        while not stopping and sent < args.max_requests and time.monotonic() < deadline:
            record: dict[str, object] = {"start": time.time()}
            try:
                response = session.post(url, data=data, headers=headers, timeout=args.timeout)
                record["status"] = response.status_code
                try:
                    answer = response.json()
                except ValueError:
                    answer = {}
                if response.status_code == 200:
                    record["model_id"] = answer.get("model_id")
                else:
                    record["error"] = str(answer.get("error", response.text[:200]))
            except requests.RequestException as exc:
                record["status"] = None
                record["error"] = f"{type(exc).__name__}: {exc}"
                time.sleep(0.01)  # a refused connection must not become a busy loop
            record["end"] = time.time()
            sent += 1
            out.write(json.dumps(record) + "\n")
            out.flush()
    print(f"load_client: {sent} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
