"""Idle, slow and flooding connections against real ``edgecast serve`` processes (LiteRT, ready in
about a second): the predictor stays reachable for clients and probes, closes what waits too
long, and at its connection limit makes room instead of going offline.

Found at 594073b: waitress's connection_limit of 100 and its two-minute channel_timeout let 100
idle TCP connections time out /readyz, /healthz and every client.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import requests

from edgecast_harness.bad_requests import json_error
from edgecast_harness.predictor import GOLDEN_STORE, Predictor, RawAnswer, edgecast

WITHIN_S = 1.0  # what a client and a probe (the kubelet's default timeout) may wait
SLOW_HEAD = b"POST /v1/predict HTTP/1.1\r\nHost: predictor\r\nContent-Type: application/json\r\n"


def golden(start_predictor, *args: str) -> Predictor:
    return start_predictor(GOLDEN_STORE, "--runtime", "litert", *args)


def connect(port: int, first_bytes: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first_bytes:
        sock.sendall(first_bytes)
    return sock


@contextmanager
def trickling(sockets: list[socket.socket], every_s: float) -> Iterator[None]:
    """Slowloris: one more header byte on each socket every ``every_s`` seconds."""
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(every_s):
            for sock in sockets:
                with contextlib.suppress(OSError):  # closed by the server, as some tests want
                    sock.send(b"x")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def closed_within(
    sockets: dict[str, socket.socket], seconds: float, since: float | None = None
) -> dict[str, tuple[float | None, bytes]]:
    """Reads each socket until the server closes it: {name: (seconds from ``since`` (default
    now) to the close, None if still open after ``seconds``; the bytes read)}."""
    since = time.monotonic() if since is None else since
    received = {name: b"" for name in sockets}
    closed: dict[str, float | None] = dict.fromkeys(sockets)
    with selectors.DefaultSelector() as selector:
        for name, sock in sockets.items():
            selector.register(sock, selectors.EVENT_READ, name)
        while selector.get_map() and time.monotonic() - since < seconds:
            for key, _ in selector.select(timeout=0.05):
                try:
                    chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    received[key.data] += chunk
                else:
                    closed[key.data] = time.monotonic() - since
                    selector.unregister(key.fileobj)
    return {name: (closed[name], received[name]) for name in sockets}


def json_answer(raw: bytes) -> RawAnswer:
    head, _, text = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return RawAnswer(int(lines[0].split()[1]), headers, text.decode())  # type: ignore[arg-type]


def is_open(sock: socket.socket) -> bool:
    sock.setblocking(False)  # with a timeout, recv would first wait for data
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


@dataclass
class Call:
    what: str
    seconds: float
    status: int | None
    error: str = ""


def client_calls(predictor: Predictor, body: dict, duration_s: float) -> list[Call]:
    """For ``duration_s``: /readyz as a kubelet asks it (a fresh connection), a prediction on
    a fresh connection and one on a kept-alive connection, in turn."""
    session = requests.Session()
    url = predictor.url
    calls: list[tuple[str, Callable[[], requests.Response]]] = [
        ("probe", lambda: requests.get(url + "/readyz", timeout=5)),
        ("predict", lambda: requests.post(url + "/v1/predict", json=body, timeout=5)),
        ("predict keep-alive", lambda: session.post(url + "/v1/predict", json=body, timeout=5)),
    ]
    made: list[Call] = []
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        for what, call in calls:
            started = time.monotonic()
            try:
                response = call()
                status = response.status_code
                error = "" if status == 200 else response.text[:200]
            except requests.RequestException as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
            made.append(Call(what, time.monotonic() - started, status, error))
        time.sleep(0.02)
    return made


def report(title: str, calls: list[Call]) -> None:
    for what in sorted({c.what for c in calls}):
        times = [c.seconds * 1000 for c in calls if c.what == what]
        failed = sum(1 for c in calls if c.what == what and c.status != 200)
        print(
            f"{title}: {what}: {len(times)} calls, {failed} failed, median "
            f"{statistics.median(times):.1f} ms, max {max(times):.1f} ms"
        )


def assert_all_answered_in_time(calls: list[Call]) -> None:
    assert calls
    failed = [c for c in calls if c.status != 200]
    assert not failed, f"{len(failed)} of {len(calls)} failed: {failed[:5]}"
    slow = [c for c in calls if c.seconds > WITHIN_S]
    assert not slow, f"{len(slow)} of {len(calls)} took over {WITHIN_S} s: {slow[:5]}"


def metric(predictor: Predictor, name: str) -> float:
    for line in predictor.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def test_500_idle_and_20_slowloris_connections_do_not_take_the_predictor_offline(
    start_predictor, body
):
    predictor = golden(start_predictor)
    idle = [connect(predictor.port) for _ in range(500)]
    slow = [connect(predictor.port, SLOW_HEAD) for _ in range(20)]
    try:
        with trickling(slow, every_s=0.5):
            calls = client_calls(predictor, body, duration_s=4.0)
            open_connections = metric(predictor, "edgecast_open_connections")
        report("500 idle + 20 slowloris", calls)
        assert_all_answered_in_time(calls)
        assert open_connections >= 520, open_connections  # the flood was held, not refused
        assert predictor.process.poll() is None, predictor.log_tail()
    finally:
        for sock in idle + slow:
            sock.close()


def test_at_the_limit_the_connections_waiting_longest_make_room(start_predictor, body):
    predictor = golden(start_predictor, "--connection-limit", "40")
    slow = [connect(predictor.port, SLOW_HEAD) for _ in range(10)]
    time.sleep(0.2)  # the slow senders are the oldest
    idle = [connect(predictor.port) for _ in range(200)]
    try:
        with trickling(slow, every_s=0.5):
            calls = client_calls(predictor, body, duration_s=2.0)
            open_connections = metric(predictor, "edgecast_open_connections")
            evicted = metric(predictor, 'edgecast_connections_closed_total{reason="evicted"}')
        report("limit 40, 10 slowloris + 200 idle", calls)
        assert_all_answered_in_time(calls)
        assert open_connections <= 40, open_connections
        assert evicted >= 170, evicted
        # A slow sender closed to make room is told why, in JSON; an idle one is just closed.
        took, raw = closed_within({"oldest slow sender": slow[0]}, 5.0)["oldest slow sender"]
        assert took is not None, "the oldest slow sender was not closed"
        answer = json_answer(raw)
        json_error(answer.status, answer.headers, answer.text, 503, ("limit of 40 connections",))
        still_open = [sock for sock in idle if is_open(sock)]
        assert len(still_open) <= 40, len(still_open)
        assert not any(is_open(sock) for sock in idle[:100])  # the oldest went first
        assert "connection limit of 40 reached" in predictor.log()
    finally:
        for sock in idle + slow:
            sock.close()


def test_silent_slow_and_idle_connections_are_closed_after_their_timeouts(start_predictor):
    predictor = golden(start_predictor, "--request-timeout", "1", "--idle-timeout", "2")
    started = time.monotonic()
    sockets = {
        "silent": connect(predictor.port),
        "slow head": connect(predictor.port, SLOW_HEAD),
        "slow body": connect(predictor.port, SLOW_HEAD + b"Content-Length: 1000\r\n\r\n{"),
        "kept alive": connect(predictor.port, b"GET /healthz HTTP/1.1\r\nHost: p\r\n\r\n"),
    }
    try:
        with trickling([sockets["slow head"]], every_s=0.3):
            closed = closed_within(sockets, 8.0, since=started)
    finally:
        for sock in sockets.values():
            sock.close()
    for name, (took, data) in closed.items():
        print(f"{name}: closed after {took} s, {len(data)} bytes answered")
    assert closed["silent"][1] == b""  # never sent a byte: closed without an answer
    for name in ("slow head", "slow body"):
        answer = json_answer(closed[name][1])
        json_error(answer.status, answer.headers, answer.text, 408, ("within 1 s",))
    assert json_answer(closed["kept alive"][1]).status == 200
    # Each is closed after its timeout (1 s for the request, 2 s idle after the answer), at
    # the next check (every second) and within this 2-core machine's margin.
    for name, timeout in (("silent", 1), ("slow head", 1), ("slow body", 1), ("kept alive", 2)):
        took = closed[name][0]
        assert took is not None and timeout - 0.1 < took < timeout + 4.0, (name, closed)
    assert predictor.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (("--connection-limit", "0"), "connection limit must be positive"),
        (("--request-timeout", "0"), "timeouts must be positive"),
        (("--first-year", "2101"), "first <= last"),
    ],
)
def test_serve_refuses_bad_limits_before_listening(option, message):
    result = edgecast("serve", "--store", str(GOLDEN_STORE), *option, check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
