"""The predictor's own HTTP server (``create_server``), run in this process on a loopback port.

Requests the server answers itself (framing, methods, sizes) use the same table as the process
tier's real ``edgecast serve`` (edgecast_harness.bad_requests RAW_REQUESTS): each answer is the
app's JSON error, readable by a client that is still sending. Probes have their own thread.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from waitress.adjustments import Adjustments

from edgecast.predictor.app import create_app
from edgecast.predictor.config import ConfigError, PredictorConfig
from edgecast.predictor.connections import ConnectionSettings, PredictorServer
from edgecast.predictor.observability import PredictorMetrics
from edgecast.predictor.server import (
    FILES_BESIDES_CONNECTIONS,
    build_state,
    create_server,
    load_initial_model,
    reserve_file_descriptors,
)
from edgecast_harness.bad_requests import RAW_REQUESTS, FuzzAnswers, json_error, raw_request
from edgecast_harness.predictor import send_raw

SEED = int(os.environ.get("EDGECAST_FUZZ_SEED", "20261201"))
RAW_CASES = 400


@contextmanager
def running(server: PredictorServer) -> Iterator[PredictorServer]:
    """The server's event loop on a thread of this process, until the block ends."""
    stop = threading.Event()
    loop = threading.Thread(target=server.run_until, args=(stop.is_set,), name="loop")
    loop.start()
    try:
        yield server
    finally:
        stop.set()
        server.pull_trigger()  # wakes the loop to see it
        loop.join(timeout=10)
        server.close_all()


@pytest.fixture(scope="module")
def server(golden_bundle: Path) -> Iterator[PredictorServer]:
    config = PredictorConfig(model_store=golden_bundle.parent, runtime="litert", port=0)
    state = build_state(config)
    load_initial_model(state)
    with running(create_server(config, create_app(state), state)) as server:
        yield server


def assert_serves(server: PredictorServer, body: dict) -> None:
    answer = send_raw(server.effective_port, raw_request(body=json.dumps(body).encode()))
    assert answer.status == 200, answer.text
    assert len(json.loads(answer.text)["forecast_kwh"]) == 24


@pytest.mark.parametrize(("make_request", "status", "fragments"), RAW_REQUESTS)
def test_the_server_answers_bad_framing_with_a_json_error(
    server: PredictorServer, body: dict, make_request, status: int, fragments: tuple[str, ...]
) -> None:
    answer = send_raw(server.effective_port, make_request(body))
    json_error(answer.status, answer.headers, answer.text, status, fragments)
    assert_serves(server, body)


def test_probes_are_answered_while_every_prediction_thread_is_busy() -> None:
    """One prediction thread, held by one request with another queued: /readyz and /healthz
    still answer at once (the kubelet gives a probe one second)."""
    release = threading.Event()

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/v1/predict":
            release.wait(10)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    adj = Adjustments(host="127.0.0.1", port=0, threads=1)
    settings = ConnectionSettings(
        limit=100, idle_timeout_s=30, request_timeout_s=10, max_body_bytes=65536
    )
    with running(PredictorServer(app, adj, settings, PredictorMetrics())) as server:
        port = server.effective_port
        predictions = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        try:
            for sock in predictions:
                sock.sendall(raw_request(body=b"{}"))
            time.sleep(0.2)  # the first holds the thread, the second waits for it
            for path in ("/readyz", "/healthz"):
                started = time.monotonic()
                answer = send_raw(port, raw_request("GET", path, headers=()), timeout=5)
                assert answer.status == 200, answer.text
                assert time.monotonic() - started < 1.0
            release.set()
            for sock in predictions:
                sock.settimeout(5)
                assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            release.set()
            for sock in predictions:
                sock.close()


def test_fuzzed_raw_requests_get_json_answers_and_no_5xx(server: PredictorServer, body: dict):
    """Seeded damage at the HTTP level (method, version, path, header lines, framing); the
    only 5xx the server may give is 501 for a Transfer-Encoding it does not implement, and
    the generator sends none."""
    answers = FuzzAnswers(SEED)
    answers.send_raw_requests(server.effective_port, RAW_CASES, body, timeout=5)
    print(f"seed {SEED}: {RAW_CASES} raw requests, by status {sorted(answers.statuses.items())}")
    answers.assert_all_good()
    assert_serves(server, body)


def test_the_open_files_limit_is_raised_for_the_connections_or_the_start_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Raspberry Pi's systemd gives services a soft limit of 1024 open files."""
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: raised.append(limits))
    reserve_file_descriptors(1000)
    assert raised == [(1000 + FILES_BESIDES_CONNECTIONS, 4096)]
    reserve_file_descriptors(900)  # within the soft limit already
    assert len(raised) == 1
    with pytest.raises(ConfigError, match=r"--connection-limit.*ulimit|ulimit.*--connection-limit"):
        reserve_file_descriptors(5000)
