"""Shadow scoring: the previous model forecasts the same requests, off the response path.

After a swap the predictor keeps the model it replaced loaded (for an immediate rollback). With
shadow scoring on, every prediction request is also handed to one worker thread, which forecasts
it with that model and gives the forecast to live accuracy under the model's own id; the client
only ever gets the serving model's answer. So the two models are scored on the same requests,
and ``LiveAccuracy.compare`` gives their figures over exactly the same hours: what a canary is
judged on.

The request path only puts the parsed request on a bounded queue (microseconds). The shadow
forecasts at most ``rate`` requests a second (a token bucket, one second of burst): a predictor
answering requests once an hour per building shadows every one, while one saturated by a load
test shadows a sample and keeps its own latency (``bench/shadow_bench.py``). The worker runs at
a lower CPU priority than the serving threads; when it falls behind, requests are dropped from
the shadow, never delayed. Requests left out are counted (``skipped`` over the rate, ``dropped``
when the queue is full); a forecast that fails is counted and logged, and changes nothing for
the client. Comparisons stay exact: ``compare`` only takes hours both models scored.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter

    from edgecast.predictor.holder import ModelHolder, ServingModel
    from edgecast.predictor.live_accuracy import LiveAccuracy
    from edgecast.predictor.validation import PredictRequest

log = logging.getLogger("edgecast.predictor.shadow")
QUEUE_LENGTH = 64
# Added to the worker thread's nice value (Linux schedules threads on their own).
NICENESS = 10


class ShadowScorer:
    """Forecasts each request with the holder's previous model and scores it, in a thread."""

    def __init__(
        self, holder: ModelHolder, live: LiveAccuracy, results: Counter, rate: float
    ) -> None:
        self.holder = holder
        self.live = live
        names = ("scored", "skipped", "dropped", "failed")
        self._results = {name: results.labels(name) for name in names}
        self._rate = rate
        self._tokens = rate
        self._refilled = time.monotonic()
        self._queue: queue.Queue[tuple[ServingModel, PredictRequest]] = queue.Queue(QUEUE_LENGTH)
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    @property
    def model(self) -> ServingModel | None:
        """The model scored in shadow: the one the serving model replaced, if loaded."""
        previous, current = self.holder.previous, self.holder.current
        if previous is None or current is None or previous.model_id == current.model_id:
            return None
        return previous

    def submit(self, request: PredictRequest) -> None:
        """Called on the request path once the client's answer is made."""
        shadow = self.model
        if shadow is None:
            return
        if not self._take_token():
            self._results["skipped"].inc()
            return
        try:
            self._queue.put_nowait((shadow, request))
        except queue.Full:
            self._results["dropped"].inc()

    def _take_token(self) -> bool:
        """Whether the rate allows one more shadow forecast now. Unlocked: request threads may
        race on it, which can only let a forecast or two more through in a second."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _work(self) -> None:
        # Not Linux, or not allowed: the worker keeps the serving threads' priority.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        while True:
            shadow, request = self._queue.get()
            try:
                self._score(shadow, request)
            except Exception:  # a bad model must never stop the worker
                self._results["failed"].inc()
                log.exception("shadow forecast by %s failed", shadow.model_id)
            finally:
                self._queue.task_done()

    def _score(self, shadow: ServingModel, request: PredictRequest) -> None:
        forecaster = shadow.forecaster
        if forecaster.config.window != len(request.loads) or (
            forecaster.config.use_temperature != (request.temperatures is not None)
        ):
            self._results["dropped"].inc()  # a model of another shape cannot answer it
            return
        values = forecaster.forecast(request.loads, request.last_timestamp, request.temperatures)
        forecast = [float(v) for v in values]
        if not all(math.isfinite(v) for v in forecast):
            raise ValueError("the forecast holds a value that is not finite")
        last_hour = request.last_timestamp // 3600
        self.live.observe(request.series, shadow.model_id, last_hour, request.loads, forecast)
        self._results["scored"].inc()
