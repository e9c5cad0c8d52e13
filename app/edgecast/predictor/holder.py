"""Which model serves, and the availability-preserving swap between models.

As in TF Serving: the new model is loaded and verified beside the old one, then a single
reference assignment makes it current. A request reads ``current`` once and finishes on that
model. The previous model stays loaded for an immediate rollback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edgecast.forecaster import Forecaster, ParityReport


@dataclass(frozen=True)
class ServingModel:
    forecaster: Forecaster
    parity: ParityReport
    load_seconds: float
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def model_id(self) -> str:
        return self.forecaster.model_id


class SwapInProgress(RuntimeError):
    """Another swap holds the lock; swaps are serialised."""


class ModelHolder:
    def __init__(self, loader: Callable[[str], tuple[Forecaster, ParityReport]]) -> None:
        self._loader = loader
        self._swap_lock = threading.Lock()
        self.current: ServingModel | None = None
        self.previous: ServingModel | None = None
        self.draining = False

    @property
    def ready(self) -> bool:
        return self.current is not None and not self.draining

    def load(self, model_id: str) -> ServingModel:
        """Loads, verifies and swaps in ``model_id``; on any error the current model stays."""
        if not self._swap_lock.acquire(blocking=False):
            raise SwapInProgress("another model swap is in progress; retry when it has finished")
        try:
            started = time.perf_counter()
            forecaster, parity = self._loader(model_id)
            new = ServingModel(forecaster, parity, time.perf_counter() - started)
            self.previous, self.current = self.current, new
            return new
        finally:
            self._swap_lock.release()

    def load_previous(self, model_id: str) -> ServingModel:
        """Loads and verifies ``model_id`` as the previous model (the rollback target, and the
        one scored in shadow), leaving the current one as it is."""
        with self._swap_lock:
            started = time.perf_counter()
            forecaster, parity = self._loader(model_id)
            self.previous = ServingModel(forecaster, parity, time.perf_counter() - started)
            return self.previous

    def rollback(self) -> ServingModel:
        """Makes the previous model current again (and the current one previous)."""
        with self._swap_lock:
            if self.previous is None:
                raise LookupError("no previous model is loaded to roll back to")
            self.previous, self.current = self.current, self.previous
            return self.current
