"""Run the predictor under waitress, load its model in the background, and shut down gracefully.

waitress stops at once on SIGTERM; a predictor behind a Kubernetes Service must instead stop
being ready, keep answering until the endpoint is gone, finish in-flight requests, then exit.
"""

from __future__ import annotations

import _thread
import ctypes
import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType

import waitress
from prometheus_client import Gauge
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import WSGITask
from werkzeug.wsgi import ClosingIterator

from edgecast.bundle import BundleError, load_bundle_dir
from edgecast.forecaster import ParityError, load_forecaster
from edgecast.predictor.app import PredictorState, create_app
from edgecast.predictor.config import PredictorConfig
from edgecast.predictor.holder import ModelHolder
from edgecast.predictor.observability import PredictorMetrics
from edgecast.signing import load_public_key
from edgecast.store import ModelStore

log = logging.getLogger("edgecast.predictor")
# waitress answers bodies over its own limit in plain text before the app sees them; keep that
# limit well above the app's so every ordinary over-limit body gets the app's JSON 413.
WAITRESS_BODY_FACTOR = 16


class InflightTracker:
    """WSGI middleware counting requests until their response has been handed to waitress."""

    def __init__(self, app: Callable[..., Iterable[bytes]], gauge: Gauge) -> None:
        self.app = app
        self.gauge = gauge
        self._lock = threading.Lock()
        self.count = 0

    def _leave(self) -> None:
        with self._lock:
            self.count -= 1
        self.gauge.dec()

    def __call__(self, environ: dict[str, object], start_response: Callable[..., object]) -> object:
        with self._lock:
            self.count += 1
        self.gauge.inc()
        try:
            return ClosingIterator(self.app(environ, start_response), [self._leave])
        except BaseException:
            self._leave()
            raise


def build_state(config: PredictorConfig) -> PredictorState:
    store = ModelStore(config.model_store)
    public_key = load_public_key(config.public_key_path) if config.public_key_path else None

    def loader(model_id: str):  # noqa: ANN202
        return load_forecaster(load_bundle_dir(store.path_of(model_id), public_key), config.runtime)

    return PredictorState(config, ModelHolder(loader), PredictorMetrics())


def load_initial_model(state: PredictorState) -> None:
    """Loads the configured (or newest) model; on failure stays alive and not ready, with why."""
    config = state.config
    try:
        model_id = config.model_id or ModelStore(config.model_store).latest()
        serving = state.holder.load(model_id)
    except (BundleError, ParityError, LookupError) as exc:
        state.load_error = f"model refused: {exc}"
        log.error("%s", state.load_error)
        return
    except Exception as exc:
        state.load_error = f"model could not be loaded: {type(exc).__name__}: {exc}"
        log.exception("%s", state.load_error)
        return
    state.record_model(serving)
    log.info(
        "ready: serving %s on the %s runtime (verified in %.2f s, parity max diff %.3g kWh)",
        serving.model_id,
        config.runtime,
        serving.load_seconds,
        serving.parity.max_abs_diff,
    )


# Linux's SO_ATTACH_FILTER and a classic BPF program of one instruction, "ret #0": every
# packet the socket is given is dropped.
_SO_ATTACH_FILTER = 26
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)


def refuse_new_handshakes(listener: socket.socket) -> bool:
    """Stops a listening socket from completing handshakes; the ones already queued stay.

    Closing a listener resets the connections the kernel completed but nobody accepted yet,
    and a client that connected an instant before the close sees its request reset. With a
    drop-all socket filter on the listener, new SYNs and the last ACK of half-open handshakes
    are dropped instead (the kernel filters packets for a listener, and children cloned
    earlier do not inherit the filter), so the accept queue can only shrink: accept what it
    holds, then close. Those clients retransmit their SYN after a second and are refused.
    Linux only; elsewhere (False) the close happens as before.
    """
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(_DROP_ALL, len(_DROP_ALL))
    fprog = struct.pack("HL", 1, ctypes.addressof(program))  # struct sock_fprog
    try:
        listener.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        log.warning("could not stop new handshakes before closing the listener: %s", exc)
        return False
    return True


def _closing_channel(holder: ModelHolder) -> type[HTTPChannel]:
    """A waitress channel whose responses say ``Connection: close`` once draining starts.

    WSGI applications may not set hop-by-hop headers, so the server does it: a keep-alive
    client (or a kube-proxy connection that outlives the endpoint) then reconnects and reaches
    a ready predictor instead of sending its next request into a closing socket.
    """

    class DrainingTask(WSGITask):
        def build_response_header(self) -> bytes:
            if holder.draining:
                self.set_close_on_finish()
            return super().build_response_header()

    class DrainingChannel(HTTPChannel):
        task_class = DrainingTask

    return DrainingChannel


class GracefulShutdown:
    """SIGTERM/SIGINT: not ready, keep serving for the delay, stop accepting, drain, exit."""

    IDLE_S = 1.0  # a keep-alive connection idle this long is closed at exit without a request

    def __init__(self, server: object, state: PredictorState, tracker: InflightTracker) -> None:
        self.state = state
        self.tracker = tracker
        if isinstance(server, BaseWSGIServer):
            self.listeners, self.channels = [server], server._map
        else:
            self.channels = server.map  # type: ignore[attr-defined]
            self.listeners = [s for s in self.channels.values() if isinstance(s, BaseWSGIServer)]
        for listener in self.listeners:
            listener.channel_class = _closing_channel(state.holder)
        self.started = False
        self.drained = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.drained:
            raise KeyboardInterrupt  # waitress's loop ends on it and joins its threads
        if self.started:
            return
        self.started = True
        self.state.holder.draining = True
        log.info("signal %d: not ready any more, draining", signum)
        threading.Thread(target=self._drain, name="drain", daemon=True).start()

    def _stop_accepting(self) -> None:
        # Runs in waitress's loop thread (through its trigger): new connections are refused.
        # Connections the kernel already accepted would be reset by the close: serve them first,
        # after making sure no more can join them. dispatcher.close, not the server's close():
        # that one also closes waitress's trigger.
        for listener in self.listeners:
            refuse_new_handshakes(listener.socket)
            while True:
                before = len(self.channels)
                listener.handle_accept()
                if len(self.channels) == before:
                    break
            wasyncore.dispatcher.close(listener)

    def _busy_connections(self) -> int:
        now = time.time()
        return sum(
            1
            for channel in list(self.channels.values())
            if isinstance(channel, HTTPChannel)
            and (
                channel.requests
                or channel.total_outbufs_len
                or now - channel.last_activity < self.IDLE_S
            )
        )

    def _drain(self) -> None:
        config = self.state.config
        time.sleep(config.shutdown_delay_s)
        self.listeners[0].trigger.pull_trigger(self._stop_accepting)
        deadline = time.monotonic() + config.drain_timeout_s
        while (self.tracker.count or self._busy_connections()) and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.tracker.count:
            log.warning("drain timeout: %d request(s) still in flight", self.tracker.count)
        log.info("drained, exiting")
        self.drained = True
        _thread.interrupt_main(signal.SIGINT)


def serve(config: PredictorConfig) -> int:
    state = build_state(config)
    app = create_app(state)
    tracker = InflightTracker(app.wsgi_app, state.metrics.inflight)
    app.wsgi_app = tracker  # type: ignore[method-assign]
    server = waitress.create_server(
        app,
        host=config.host,
        port=config.port,
        threads=config.threads,
        max_request_body_size=config.max_body_bytes * WAITRESS_BODY_FACTOR,
        ident="edgecast",
        clear_untrusted_proxy_headers=True,
    )
    shutdown = GracefulShutdown(server, state, tracker)
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    threading.Thread(target=load_initial_model, args=(state,), name="load", daemon=True).start()
    log.info(
        "listening on http://%s:%s (runtime %s, admin API %s)",
        config.host,
        server.effective_port,
        config.runtime,  # type: ignore[attr-defined]
        "on" if config.admin_token else "off",
    )
    server.run()
    return 0
