"""Steady load on a predictor from a separate process: /v1/predict requests back to back.

    python -m edgecast_harness.load_client --url http://127.0.0.1:8080 --duration 30 --out r.jsonl

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
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import requests

from edgecast_harness.bodies import window_from_data


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
    body = json.loads(args.body.read_text()) if args.body else window_from_data()
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


def read_records(path: Path) -> list[dict]:
    """The records written so far (none when the file does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class LoadProcess:
    """This client in its own process, writing to ``out``; a context manager that stops it.

    ``LoadProcess(url, out, duration=300).start(wait_for=5)`` returns once five requests were
    answered with 200 (load flowing), or raises with the client's own output.
    """

    def __init__(
        self,
        url: str,
        out: Path,
        *extra: str,
        duration: float = 3600,
        max_requests: int = 10_000_000,
    ) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        self.argv = [
            sys.executable, "-m", "edgecast_harness.load_client", "--url", url,
            "--duration", str(duration), "--max-requests", str(max_requests),
            "--out", str(out), *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None

    def start(self, wait_for: int = 5, timeout: float = 60) -> LoadProcess:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while sum(1 for r in self.records() if r.get("status") == 200) < wait_for:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(
                    f"no load flowing to {self.argv[4]} after {timeout} s: "
                    f"{self.records()[-3:]}\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def records(self) -> list[dict]:
        return read_records(self.out)

    def failed(self) -> list[dict]:
        return [r for r in self.records() if r.get("status") != 200]

    def stop(self) -> int:
        """Ends the client (SIGTERM, it finishes its request) and returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LoadProcess:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
