"""The predictor's HTTP connections: bounded in number and in time, every error answered in JSON.

waitress parses HTTP and runs the WSGI tasks, but with any of its settings a handful of idle
or half-sent connections take a predictor offline: at ``connection_limit`` it stops accepting
(the kubelet's probes then time out), ``channel_timeout`` counts from the last byte, so a
request trickled in a byte at a time is kept forever, probes queue behind predictions, and the
errors it answers itself are text/plain (only its select() loop's limit of 1024 descriptors is
a setting away). So these classes extend waitress's server, channel and tasks (waitress is
pinned in requirements.txt), and the loop polls:

* a request, headers and body, must arrive within ``request_timeout_s`` (the first one counted
  from the connection's accept), else 408; a connection idle between requests is closed after
  ``idle_timeout_s``, and one whose client stops reading its answer too;
* at ``limit`` connections a new one is still accepted: the connection waiting longest without
  a request being answered (idle, or sending slowly) is closed to make room, so an attacker's
  connections cannot starve a client or a probe; only when every connection has a request in
  the works does the new one wait in the listen backlog for a few milliseconds;
* ``GET /healthz`` and ``GET /readyz`` run on their own thread, never queued behind predictions;
* every error waitress answers itself (400, 408, 413, 431, 501, 503) is the app's JSON
  ``{"error", "status"}`` (``edgecast.predictor.http_errors``), and the connection is closed
  gracefully (lingering) so the client can read it even while it is still sending.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher, WSGITask
from waitress.utilities import Error

from edgecast.predictor.http_errors import JsonErrorTask, RequestTimeout, ServiceUnavailable
from edgecast.predictor.observability import PredictorMetrics

log = logging.getLogger("edgecast.predictor")

PROBE_PATHS = frozenset({"/healthz", "/readyz"})
LINGER_S = 2.0  # how long a closing connection's late input is read and dropped
POLL_S = 1.0  # the event loop's longest wait, and how often the timeouts are checked
DRAIN_POLL_S = 0.05  # the same while shutting down, so the exit follows the drain closely
RESUME_FRACTION = 0.9  # "below the limit again" is logged under this share of the limit


@dataclass(frozen=True)
class ConnectionSettings:
    limit: int
    idle_timeout_s: float
    request_timeout_s: float
    max_body_bytes: int


class PredictorTask(WSGITask):
    """Answers say ``Connection: close`` once draining starts.

    WSGI applications may not set hop-by-hop headers, so the server does it: a keep-alive
    client (or a kube-proxy connection that outlives the endpoint) then reconnects and reaches
    a ready predictor instead of sending its next request into a closing socket.
    """

    channel: PredictorChannel

    def build_response_header(self) -> bytes:
        if self.channel.server.draining:
            self.set_close_on_finish()
        return super().build_response_header()


class PredictorChannel(HTTPChannel):
    """One client connection, with the times the server's timeouts and eviction read."""

    task_class = PredictorTask
    error_task_class = JsonErrorTask
    server: PredictorServer

    began = False  # a byte of a request has arrived on this connection
    linger = False  # close gracefully: the client may still be sending
    linger_until: float | None = None

    def __init__(
        self,
        server: PredictorServer,
        sock: socket.socket,
        addr: object,
        adj: Adjustments,
        map: dict[int, wasyncore.dispatcher] | None = None,
    ) -> None:
        super().__init__(server, sock, addr, adj, map)
        # The first request is timed from the accept: a connection that never sends is idle.
        self.request_started = self.creation_time

    @property
    def lingering(self) -> bool:
        return self.linger_until is not None

    @property
    def answering(self) -> bool:
        """A request of this connection is queued, running, or its answer is being sent."""
        return bool(self.requests or self.total_outbufs_len)

    @property
    def closing(self) -> bool:
        return bool(self.will_close or self.close_when_flushed or self.lingering)

    def waiting_since(self) -> float:
        """Since when the server has waited on the client (for a request, or the rest of one)."""
        if self.request is not None or not self.began:
            return self.request_started
        return self.last_activity

    def received(self, data: bytes) -> bool:
        if data and self.request is None and self.began:
            self.request_started = time.time()
        self.began = self.began or bool(data)
        return super().received(data)

    def answer_and_close(self, error: Error) -> None:
        """Answers ``error`` in place of the request being received (in the loop thread)."""
        if self.request is not None:
            self.request.close()
            self.request = None
        request = HTTPRequestParser(self.adj)
        request.error = error
        task = self.error_task_class(self, request)
        try:
            task.service()
        except ClientDisconnected:
            self.will_close = True
            return
        self.close_when_flushed = True

    def handle_close(self) -> None:
        if self.linger and not self.lingering and self.connected and not self.total_outbufs_len:
            # Closing with unread input makes the kernel reset the connection, and a client
            # still sending would lose the answer: stop writing, read until it closes.
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.linger_until = time.time() + LINGER_S
                self.will_close = self.close_when_flushed = False
                return
        super().handle_close()

    def close_now(self) -> None:
        self.linger = False
        self.handle_close()

    def readable(self) -> bool:
        return self.lingering or super().readable()

    def writable(self) -> bool:
        return not self.lingering and super().writable()

    def handle_read(self) -> None:
        if not self.lingering:
            super().handle_read()
            return
        try:
            data = self.recv(self.adj.recv_bytes)  # at the end of input recv closes for good
        except OSError:
            data = b""
            self.close_now()
        if data and time.time() > self.linger_until:  # type: ignore[operator]
            self.close_now()

    def has_unread_input(self) -> bool:
        """Bytes of a request wait in the kernel (the loop has not read them yet)."""
        try:
            return bool(self.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:
            return False


class PredictorServer(TcpWSGIServer):
    """waitress's TCP server with the connection policy above, run by ``run_until``."""

    channel_class = PredictorChannel
    draining = False  # answers close their connection; the loop polls faster
    at_limit = False

    def __init__(
        self,
        application: Callable[..., Iterable[bytes]],
        adj: Adjustments,
        settings: ConnectionSettings,
        metrics: PredictorMetrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.probe_dispatcher = ThreadedTaskDispatcher()
        self.probe_dispatcher.set_thread_count(1)
        super().__init__(application, map={}, adj=adj)
        metrics.open_connections.set_function(lambda: len(self.active_channels))
        # Read when scraped: counting in the request path would cost every request a lock.
        metrics.inflight.set_function(self.requests_in_progress)

    # --- accepting, within the limit ------------------------------------------------------

    def eviction_candidate(self) -> PredictorChannel | None:
        """The connection to close for a new one: a lingering one, else the one waiting longest
        on its client; never one with a request in the works."""
        best: PredictorChannel | None = None
        best_since = float("inf")
        for channel in self.active_channels.values():
            if channel.lingering:
                return channel
            if channel.answering or channel.closing:
                continue
            since = channel.waiting_since()
            if since < best_since:
                best, best_since = channel, since
        return best

    def room_for_one(self) -> bool:
        return (
            len(self.active_channels) < self.settings.limit or self.eviction_candidate() is not None
        )

    def readable(self) -> bool:
        if not self.accepting:
            return False
        open_now = len(self.active_channels)
        if open_now >= self.settings.limit and not self.at_limit:
            self.at_limit = True
            log.warning(
                "connection limit of %d reached: closing the connections that wait longest on "
                "their clients to make room for new ones (see --connection-limit)",
                self.settings.limit,
            )
        elif self.at_limit and open_now < self.settings.limit * RESUME_FRACTION:
            self.at_limit = False
            log.info("open connections below the limit of %d again", self.settings.limit)
        return self.room_for_one()

    def handle_accept(self) -> None:
        self.accept_one()

    def accept_one(self) -> bool:
        """Accepts one queued connection, closing another one first when at the limit; False
        when there was none to accept or no room for it."""
        victim = None
        if len(self.active_channels) >= self.settings.limit:
            victim = self.eviction_candidate()
            if victim is None:
                return False
        try:
            pair = self.accept()
            if pair is None:
                return False
            conn, addr = pair
            self.set_socket_options(conn)
        except OSError as exc:
            log.warning("accept failed: %s", exc)
            return False
        self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
        # Closed after the accept, so the new connection cannot take the victim's descriptor
        # while the loop may still hold an event for it.
        if victim is not None:
            self.evict(victim)
        return True

    def evict(self, channel: PredictorChannel) -> None:
        self.metrics.connections_closed.labels("evicted").inc()
        if channel.request is not None:
            channel.answer_and_close(
                ServiceUnavailable(
                    f"the predictor is at its limit of {self.settings.limit} connections and "
                    "closed this unfinished request to make room; send it again at once"
                )
            )
        else:
            channel.close_now()

    # --- timeouts -------------------------------------------------------------------------

    def maintenance(self, now: float) -> None:
        settings = self.settings
        for channel in list(self.active_channels.values()):
            if channel.lingering:
                if now > channel.linger_until:  # type: ignore[operator]
                    channel.close_now()
            elif channel.requests:
                continue
            elif channel.total_outbufs_len:
                if now - channel.last_activity > settings.idle_timeout_s:
                    log.info("closing a connection whose client stopped reading its answer")
                    self.metrics.connections_closed.labels("idle_timeout").inc()
                    channel.close_now()
            elif channel.closing:
                continue
            elif channel.request is not None or not channel.began:
                if now - channel.request_started > settings.request_timeout_s:
                    self.metrics.connections_closed.labels("request_timeout").inc()
                    if channel.began:
                        limit = settings.request_timeout_s
                        channel.answer_and_close(
                            RequestTimeout(
                                f"the request was not received within {limit:g} s: "
                                "send the whole request at once"
                            )
                        )
                    else:
                        channel.close_now()
            elif now - channel.last_activity > settings.idle_timeout_s:
                self.metrics.connections_closed.labels("idle_timeout").inc()
                channel.close_now()

    # --- tasks ----------------------------------------------------------------------------

    def add_task(self, task: PredictorChannel) -> None:
        request = task.requests[0]
        if request.error is None and request.command == "GET" and request.path in PROBE_PATHS:
            self.probe_dispatcher.add_task(task)
        else:
            self.task_dispatcher.add_task(task)

    # --- the loop and the end -------------------------------------------------------------

    def run_until(self, done: Callable[[], bool]) -> None:
        """The event loop, until ``done()`` (called after each turn, in this thread) says so."""
        while not done():
            wasyncore.poll2(DRAIN_POLL_S if self.draining else POLL_S, self._map)
            now = time.time()
            if now >= self.next_channel_cleanup:
                self.next_channel_cleanup = now + POLL_S
                self.maintenance(now)

    def requests_in_progress(self) -> int:
        """Requests received and not yet answered in full: queued, running, or being sent."""
        return sum(len(channel.requests) for channel in list(self.active_channels.values()))

    def busy_connections(self, idle_s: float) -> int:
        """Connections that may still carry a request: one being received, answered or read,
        input not read yet, or activity in the last ``idle_s`` seconds."""
        now = time.time()
        return sum(
            1
            for channel in list(self.active_channels.values())
            if channel.answering
            or channel.request is not None
            or channel.lingering
            or now - channel.last_activity < idle_s
            or channel.has_unread_input()
        )

    def stop_listening(self) -> None:
        """Closes the listening socket only (the server's close() also closes the trigger)."""
        wasyncore.dispatcher.close(self)

    def close_all(self) -> None:
        """Closes every connection, the listener and the trigger, and ends the worker threads."""
        for channel in list(self.active_channels.values()):
            channel.close_now()
        if self.accepting:
            self.stop_listening()
        self.trigger.close()
        for tasks in (self.task_dispatcher, self.probe_dispatcher):
            tasks.shutdown(timeout=1)
