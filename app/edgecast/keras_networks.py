"""Traced Keras networks, and a spare one kept ready so a keras hot swap only assigns weights.

Building the network in Keras and tracing its call into a concrete function is most of a keras
swap (hundreds of ms, all of it holding the interpreter lock the serving threads need);
assigning a bundle's weights into a traced network takes about a millisecond. A predictor keeps
one spare network of the architecture it last loaded, traced, run once and unused: loading a
bundle of that architecture takes the spare, and a new spare is built in the background. A spare
is never shared: once taken it belongs to the one runtime that took it, so a model that serves,
stays loaded for rollback or is scored in shadow never has its weights changed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecast.architecture import SBNConfig

log = logging.getLogger("edgecast.predictor")


@dataclass(frozen=True)
class TracedNetwork:
    """A network and its call, traced once for any batch size."""

    model: Any
    call: Any  # a tf ConcreteFunction taking the inputs in input_names' order
    input_names: tuple[str, ...]


def input_names(config: SBNConfig) -> tuple[str, ...]:
    return ("load", "calendar") + (("temperature",) if config.use_temperature else ())


def trace_network(config: SBNConfig) -> TracedNetwork:
    """Builds the network (weights not yet the bundle's) and traces its inference call."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from edgecast.sbn import build_sbn

    model = build_sbn(config)
    names = input_names(config)
    shapes = {
        "load": (None, config.window),
        "calendar": (None, config.horizon, config.calendar_width),
        "temperature": (None, config.window),
    }
    signature = [tf.TensorSpec(shapes[n], tf.float32, name=n) for n in names]
    # A concrete function skips tf.function's per-call argument binding (~0.6 ms a request).
    call = tf.function(
        lambda *xs: model(list(xs), training=False), input_signature=signature
    ).get_concrete_function()
    return TracedNetwork(model, call, names)


def warmed_network(config: SBNConfig) -> TracedNetwork:
    """A traced network run once on zeros: the first run of a traced function optimises its
    graph (tens of ms), better spent before a swap than during one."""
    network = trace_network(config)
    zeros = [
        np.zeros((1, *spec.shape[1:]), np.float32)
        for spec in network.call.structured_input_signature[0]
    ]
    network.call(*zeros)
    return network


class SpareNetworks:
    """A traced network kept ready, in the background, for the architecture that serves."""

    def __init__(self, build: Callable[[SBNConfig], TracedNetwork] = warmed_network) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._serving: SBNConfig | None = None
        self._spare: tuple[SBNConfig, TracedNetwork] | None = None
        self._builder: threading.Thread | None = None
        self.taken_ready = 0  # takes served by a spare
        self.built_on_demand = 0  # takes that had to build

    def take(self, config: SBNConfig) -> TracedNetwork:
        """A traced network of ``config`` that nobody else holds: the spare when it fits."""
        # Keras builds one network at a time: a spare under way is waited for first.
        self.wait()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare[0] == config:
            self.taken_ready += 1
            log.info("keras network: the spare, traced in advance")
            return spare[1]
        self.built_on_demand += 1
        log.info("keras network: traced now (no spare of this architecture)")
        return self._build(config)

    def prepare(self, config: SBNConfig | None = None) -> None:
        """Starts building a spare of ``config`` (default: the last one prepared, the serving
        architecture when a load was refused) unless one is ready or under way."""
        self.wait()
        with self._lock:
            config = config or self._serving
            self._serving = config
            if config is None or (self._spare is not None and self._spare[0] == config):
                return
            self._spare = None
            thread = threading.Thread(
                target=self._build_spare, args=(config,), name="edgecast-keras-spare", daemon=True
            )
            self._builder = thread
        thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for the spare under way, if any; true when none is being built."""
        with self._lock:
            builder = self._builder
        if builder is not None:
            builder.join(timeout)
            return not builder.is_alive()
        return True

    def _build_spare(self, config: SBNConfig) -> None:
        try:
            network = self._build(config)
        except Exception:  # a spare is an optimisation: the next take builds its own
            log.exception("could not build a spare keras network")
            return
        with self._lock:
            if self._serving == config:
                self._spare = (config, network)
