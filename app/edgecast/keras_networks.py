"""Compiled Keras networks: one per architecture, shared by every model of that architecture.

A keras model is its architecture's network called statelessly on the model's own weights. The
network is built, traced and compiled by XLA once per architecture and process; a model holds
only its weights, as constant tensors. So:

* loading a bundle of an architecture already compiled costs converting its weights (about a
  millisecond) and the parity gate, not a trace (hundreds of ms, most of it holding the
  interpreter lock the serving threads need);
* no model's weights ever change: one swapped out, kept for rollback or scored in shadow
  forecasts exactly what it did;
* XLA fuses the network's thirty-odd small ops into one kernel run on the calling thread, where
  TensorFlow's executor hands each op to its thread pools: a one-case forecast costs about half.

XLA compiles once per batch size (a few hundred ms), so calls on 1, ``BATCH`` and ``CHUNK``
cases are compiled with the network: up to ``BATCH`` cases (concurrent requests, see
``CaseBatcher``) run padded to ``BATCH``, more in chunks of ``CHUNK``, the last one padded.
Where XLA cannot compile, the network runs on TensorFlow's executor (the same function, without
``jit_compile``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecast.architecture import SBNConfig, expected_weight_shapes
from edgecast.bundle.errors import cut_short

log = logging.getLogger("edgecast.predictor")

# Cases per call: concurrent requests run together in batches of up to BATCH cases, larger
# batches (the parity gate's reference cases, evaluations) in chunks of CHUNK; each of the
# three sizes is compiled once, with the network.
BATCH = 4
CHUNK = 64
# Architectures whose compiled network a process keeps; the least recently used goes first.
MAX_ARCHITECTURES = 4


def input_names(config: SBNConfig) -> tuple[str, ...]:
    return ("load", "calendar") + (("temperature",) if config.use_temperature else ())


@dataclass(frozen=True)
class CompiledNetwork:
    """An architecture's network as a function of (weights, inputs), compiled once."""

    config: SBNConfig
    # Runs the traced function on a flat list of tensors: the weights in weight_paths' order,
    # then the inputs in input_names' order.
    run: Callable[[list[Any]], Any]
    to_tensor: Callable[[np.ndarray], Any]
    weight_paths: tuple[str, ...]
    input_names: tuple[str, ...]
    compiled: bool  # by XLA; False where it could not compile and the executor runs it
    flat: bool  # run skips the signature's argument binding (see _flat_runner)

    def weights(self, arrays: dict[str, np.ndarray]) -> list[Any]:
        """A model's weights as the constant tensors ``predict`` takes (shapes checked when
        the bundle was loaded)."""
        return [self.to_tensor(arrays[path]) for path in self.weight_paths]

    def predict(self, weights: list[Any], inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Scaled forecasts: one case as is, up to BATCH cases padded to BATCH, more in padded
        chunks of CHUNK."""
        arrays = [inputs[name] for name in self.input_names]
        rows = len(arrays[0])
        if rows == 1:
            return self._forecast(weights, arrays)
        size = BATCH if rows <= BATCH else CHUNK
        results = np.empty((rows, self.config.horizon), dtype=np.float32)
        for start in range(0, rows, size):
            chunk = [_padded(array[start : start + size], size) for array in arrays]
            results[start : start + size] = self._forecast(weights, chunk)[: rows - start]
        return results

    def _forecast(self, weights: list[Any], arrays: list[np.ndarray]) -> np.ndarray:
        return self.run([*weights, *map(self.to_tensor, arrays)]).numpy()


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with zero cases appended up to ``size`` (each case is forecast on its own)."""
    missing = size - len(array)
    if missing == 0:
        return array
    return np.concatenate([array, np.zeros((missing, *array.shape[1:]), array.dtype)])


def compile_network(config: SBNConfig) -> CompiledNetwork:
    """Builds the architecture's network, traces it as a function of its weights and compiles
    its calls on 1, BATCH and CHUNK cases."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from edgecast.sbn import build_sbn

    model = build_sbn(config)
    layout = {v.path: tuple(v.shape) for v in model.trainable_variables}
    if layout != expected_weight_shapes(config) or model.non_trainable_variables:
        raise RuntimeError(f"network layout {layout} differs from the architecture's")
    names = input_names(config)
    shapes = {
        "load": (None, config.window),
        "calendar": (None, config.horizon, config.calendar_width),
        "temperature": (None, config.window),
    }
    specs = [tf.TensorSpec(v.shape, tf.float32) for v in model.trainable_variables]
    specs += [tf.TensorSpec(shapes[n], tf.float32, name=n) for n in names]
    count = len(layout)

    def forward(*tensors: Any) -> Any:
        outputs, _ = model.stateless_call(
            list(tensors[:count]), [], list(tensors[count:]), training=False
        )
        return outputs

    def to_tensor(array: np.ndarray) -> Any:
        return tf.constant(array, tf.float32)

    def traced(jit: bool) -> CompiledNetwork:
        call = tf.function(forward, input_signature=specs, jit_compile=jit).get_concrete_function()
        run, flat = _flat_runner(call)
        network = CompiledNetwork(config, run, to_tensor, tuple(layout), names, jit, flat)
        zeros = network.weights({p: np.zeros(s, np.float32) for p, s in layout.items()})
        for rows in (1, BATCH, CHUNK):  # XLA compiles on a shape's first call
            network.predict(zeros, {n: np.zeros((rows, *shapes[n][1:])) for n in names})
        return network

    try:
        return traced(jit=True)
    except tf.errors.OpError as exc:  # XLA is an optimisation: the executor runs the same
        log.warning(
            "keras network: XLA cannot compile it (%s); the executor runs it", cut_short(exc)
        )
        return traced(jit=False)


def _flat_runner(call: Any) -> tuple[Callable[[list[Any]], Any], bool]:
    """Calls a concrete function on tensors already in its flat order. Its public call binds
    the arguments to the signature first, four times the cost of running this network
    (about 0.15 ms a request); ``_call_flat`` skips that binding, where TensorFlow has it."""
    call_flat = getattr(call, "_call_flat", None)
    if call_flat is None:
        return (lambda tensors: call(*tensors)), False
    captured = call.captured_inputs
    return (lambda tensors: call_flat(tensors, captured)), True


class CaseBatcher:
    """Runs one model's concurrent one-case forecasts together, as one call of up to BATCH
    cases: a request that finds a call under way queues its case; the thread whose call ends
    hands the queue to the oldest queued request, which runs the next call for all of them. A
    lone request runs at once, as if there were no batcher; no thread runs more than one call.
    Under load a call costs about what a one-case call does, so the cases share its cost.
    """

    def __init__(self, network: CompiledNetwork, weights: list[Any]) -> None:
        self._network = network
        self._weights = weights
        self._lock = threading.Lock()
        self._queued: list[_Case] = []
        self._busy = False
        self.calls = 0
        self.cases = 0

    @property
    def queued(self) -> int:
        """Cases waiting for a call."""
        with self._lock:
            return len(self._queued)

    def forecast(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """The (1, horizon) scaled forecast of one case."""
        case = _Case(inputs)
        with self._lock:
            leads = not self._busy
            self._busy = True
            if not leads:
                self._queued.append(case)
        if not leads:
            case.done.wait()
            if not case.leads:
                return case.outcome()
        with self._lock:
            batch = [case, *self._queued[: BATCH - 1]]
            del self._queued[: BATCH - 1]
        try:
            merged = {n: np.concatenate([c.inputs[n] for c in batch]) for n in case.inputs}
            results = self._network.predict(self._weights, merged)
            for i, queued in enumerate(batch):
                queued.result = results[i : i + 1]
        except BaseException as exc:  # each request of the call gets the call's error
            for queued in batch:
                queued.error = exc
        finally:
            with self._lock:
                self.calls += 1
                self.cases += len(batch)
                successor = self._queued.pop(0) if self._queued else None
                self._busy = successor is not None
            for queued in batch[1:]:
                queued.done.set()
            if successor is not None:
                successor.leads = True
                successor.done.set()
        return case.outcome()


class _Case:
    __slots__ = ("done", "error", "inputs", "leads", "result")

    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self.inputs = inputs
        self.done = threading.Event()
        self.leads = False
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None

    def outcome(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class CompiledNetworks:
    """The compiled network of each architecture in use, built on first need."""

    def __init__(self, build: Any = compile_network) -> None:
        self._build = build
        self._lock = threading.Lock()  # Keras builds one network at a time
        self._networks: OrderedDict[SBNConfig, CompiledNetwork] = OrderedDict()
        self.built = 0

    def get(self, config: SBNConfig) -> CompiledNetwork:
        with self._lock:
            network = self._networks.get(config)
            if network is None:
                network = self._build(config)
                self.built += 1
                log.debug("keras network: compiled for this architecture")
                self._networks[config] = network
                if len(self._networks) > MAX_ARCHITECTURES:
                    self._networks.popitem(last=False)
            self._networks.move_to_end(config)
            return network


# The process's networks: every keras runtime of one architecture shares one.
NETWORKS = CompiledNetworks()
