"""Run the predictor under waitress, load its model in the background, and shut down gracefully.

waitress stops at once on SIGTERM; a predictor behind a Kubernetes Service must instead stop
being ready, keep answering until the endpoint is gone, finish in-flight requests, then exit.
The event loop is run here (connections.py), so the shutdown is a step between its turns.
"""

from __future__ import annotations

import ctypes
import logging
import resource
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType

from waitress.adjustments import Adjustments

from edgecast.bundle import BundleError, load_bundle_dir
from edgecast.forecaster import ParityError, load_forecaster
from edgecast.predictor.app import PredictorState, create_app
from edgecast.predictor.config import ConfigError, PredictorConfig
from edgecast.predictor.connections import ConnectionSettings, PredictorServer
from edgecast.predictor.holder import ModelHolder
from edgecast.predictor.observability import PredictorMetrics
from edgecast.signing import load_public_key
from edgecast.store import ModelStore

log = logging.getLogger("edgecast.predictor")
# Open files besides the connections: the listener, the trigger's pipe, logs, the model files,
# the runtimes' own.
FILES_BESIDES_CONNECTIONS = 64


def build_state(config: PredictorConfig) -> PredictorState:
    store = ModelStore(config.model_store)
    public_key = load_public_key(config.public_key_path) if config.public_key_path else None

    def loader(model_id: str):  # noqa: ANN202
        bundle = load_bundle_dir(store.path_of(model_id), public_key, config.parity_limit)
        return load_forecaster(bundle, config.runtime)

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
    if config.shadow_model_id and config.shadow_model_id != serving.model_id:
        load_shadow_model(state, config.shadow_model_id)


def load_shadow_model(state: PredictorState, model_id: str) -> None:
    """Loads the model to score in shadow; one that cannot be had leaves the predictor serving,
    with nothing in shadow and the reason logged (the serving model matters more)."""
    try:
        shadow = state.holder.load_previous(model_id)
    except Exception as exc:
        log.warning("no model in shadow: %s could not be loaded: %s", model_id, exc)
        return
    log.info(
        "scoring %s in shadow (parity max diff %.3g kWh)", model_id, shadow.parity.max_abs_diff
    )


# Linux's SO_ATTACH_FILTER and a classic BPF program that drops a TCP segment carrying SYN
# without ACK (a new connection's first packet) and passes every other one. A listener's
# filter sees the TCP header at offset 0; byte 13 holds the flags (SYN 0x02, ACK 0x10).
_SO_ATTACH_FILTER = 26
_DROP_NEW_SYNS = b"".join(
    struct.pack("HBBI", code, jump_true, jump_false, k)
    for code, jump_true, jump_false, k in (
        (0x30, 0, 0, 13),  # ldb [13]: the flags
        (0x54, 0, 0, 0x12),  # and #(SYN|ACK)
        (0x15, 0, 1, 0x02),  # jeq #SYN: a bare SYN drops, anything else passes
        (0x06, 0, 0, 0),  # ret #0: drop
        (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: the whole segment
    )
)
# After new SYNs stop, handshakes already answered with SYN-ACK may still complete: their
# last ACK passes the filter and lands in the accept queue. This long (far above a loopback
# or LAN round trip) they are given before the listener closes.
HANDSHAKE_SETTLE_S = 0.25


def refuse_new_handshakes(listener: socket.socket) -> bool:
    """Stops a listening socket from starting handshakes; the ones under way still complete.

    Closing a listener resets the connections the kernel completed but nobody accepted yet,
    and the half-open ones: a client whose last ACK got there, or is on its way, has sent its
    request into a connection that is then reset. With a filter on the listener that drops
    bare SYNs only, no handshake starts, those under way complete into the accept queue, and
    the queue only shrinks once they did: accept what it holds, then close. The clients whose
    SYN was dropped retransmit it after a second and are refused. Linux only; elsewhere
    (False) the close happens as before.
    """
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(_DROP_NEW_SYNS, len(_DROP_NEW_SYNS))
    fprog = struct.pack("HL", len(_DROP_NEW_SYNS) // 8, ctypes.addressof(program))
    try:
        listener.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError as exc:
        log.warning("could not stop new handshakes before closing the listener: %s", exc)
        return False
    return True


class GracefulShutdown:
    """SIGTERM/SIGINT: not ready, keep serving for the delay, stop accepting, drain, exit.

    The handler only records the signal; every step runs in the event loop's thread between
    two turns (``step``), so the listener is closed before the drain is judged, and nothing is
    ever raised into the loop. A second signal changes nothing.
    """

    IDLE_S = 1.0  # a keep-alive connection idle this long is closed at exit without a request

    def __init__(self, server: PredictorServer, state: PredictorState) -> None:
        self.server = server
        self.state = state
        self.signalled_at: float | None = None
        self.drain_deadline: float | None = None
        self.handshakes_settled_at: float | None = None
        self.listening = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.signalled_at is not None:
            log.info("signal %d: already shutting down", signum)
            return
        self.signalled_at = time.monotonic()
        self.state.holder.draining = True
        self.server.draining = True
        log.info("signal %d: not ready any more, draining", signum)

    def step(self) -> bool:
        """Advances the shutdown; True once the predictor may exit."""
        if self.signalled_at is None:
            return False
        now = time.monotonic()
        if self.drain_deadline is None:
            if now < self.signalled_at + self.state.config.shutdown_delay_s:
                return False
            self.drain_deadline = now + self.state.config.drain_timeout_s
            # Closing a listener resets the connections the kernel completed but nobody
            # accepted yet: stop new handshakes, let those under way complete, accept what
            # is queued, then close.
            refuse_new_handshakes(self.server.socket)
            self.handshakes_settled_at = now + HANDSHAKE_SETTLE_S
        if self.listening:
            while self.server.accept_one():
                pass
            settled = now >= (self.handshakes_settled_at or now)
            if settled and self.server.room_for_one():  # nothing left, not merely no room
                self.server.stop_listening()
                self.listening = False
        busy = self.server.busy_connections(self.IDLE_S)
        if (busy or self.listening) and now < self.drain_deadline:
            return False
        if busy or self.listening:
            log.warning(
                "drain timeout: closing %d busy connection(s), %d with a request in the works",
                busy,
                self.server.requests_in_progress(),
            )
        return True


def reserve_file_descriptors(connection_limit: int) -> None:
    """Raises the soft limit on open files to what the connection limit needs, or refuses."""
    needed = connection_limit + FILES_BESIDES_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"a connection limit of {connection_limit} needs {needed} open files, but the hard "
            f"limit (ulimit -Hn) is {hard}: lower --connection-limit or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def create_server(
    config: PredictorConfig, app: Callable[..., Iterable[bytes]], state: PredictorState
) -> PredictorServer:
    adj = Adjustments(
        host=config.host,
        port=config.port,
        threads=config.threads,
        # waitress counts a body of exactly this size as too large; the app's limit is inclusive
        max_request_body_size=config.max_body_bytes + 1,
        ident="edgecast",
        clear_untrusted_proxy_headers=True,
    )
    settings = ConnectionSettings(
        limit=config.connection_limit,
        idle_timeout_s=config.idle_timeout_s,
        request_timeout_s=config.request_timeout_s,
        max_body_bytes=config.max_body_bytes,
    )
    return PredictorServer(app, adj, settings, state.metrics)


def serve(config: PredictorConfig) -> int:
    """Serves until SIGTERM or SIGINT, then drains; raises ConfigError before listening."""
    reserve_file_descriptors(config.connection_limit)
    state = build_state(config)
    app = create_app(state)
    server = create_server(config, app, state)
    shutdown = GracefulShutdown(server, state)
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    threading.Thread(target=load_initial_model, args=(state,), name="load", daemon=True).start()
    log.info(
        "listening on http://%s:%s (runtime %s, %d threads, admin API %s, at most %d connections)",
        config.host,
        server.effective_port,
        config.runtime,
        config.threads,
        "on" if config.admin_token else "off",
        config.connection_limit,
    )
    server.run_until(shutdown.step)
    server.close_all()
    log.info("drained, exiting")
    return 0
