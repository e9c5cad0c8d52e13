"""Inference runtimes: ``keras`` (the reference) and ``litert`` (lightweight, no TensorFlow).

Both take the same named float32 inputs and return scaled forecasts. The hot path calls a
compiled function or the interpreter directly, never ``model.predict`` (tens of ms of framework
overhead per call). Frameworks are imported only when their runtime is chosen, so a LiteRT
predictor never loads TensorFlow.
"""

from __future__ import annotations

import math
import queue
import threading
from typing import Any, Protocol

import numpy as np

from edgecast.bundle import Bundle, BundleError
from edgecast.bundle.errors import cut_short
from edgecast.bundle.layout import LITERT, MAX_FILE_BYTES
from edgecast.store_rules import shown

RUNTIMES = ("keras", "litert")
# Interpreters of one LiteRT model, at most: one per waitress thread of the default settings.
MAX_INTERPRETERS = 4
# The tensors a LiteRT model may allocate: its weights (within the file's cap) and, as much again,
# the activations of one case.
MAX_LITERT_TENSOR_BYTES = 2 * MAX_FILE_BYTES[LITERT]


class Runtime(Protocol):
    name: str

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class KerasRuntime:
    """The architecture's compiled network (shared, see ``edgecast.keras_networks``) on the
    bundle's weights, which are this runtime's alone. Concurrent one-case forecasts run
    together (``CaseBatcher``)."""

    name = "keras"

    def __init__(self, bundle: Bundle) -> None:
        from edgecast.keras_networks import NETWORKS, CaseBatcher

        self._network = NETWORKS.get(bundle.config)
        self._weights = self._network.weights(bundle.weights)
        self.batcher = CaseBatcher(self._network, self._weights)

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        if len(inputs["load"]) == 1:
            return self.batcher.forecast(inputs)
        return self._network.predict(self._weights, inputs)


class LiteRTRuntime:
    """Runs the bundle's ``model.tflite`` with ai-edge-litert, one interpreter per concurrent
    request."""

    name = "litert"

    def __init__(self, bundle: Bundle) -> None:
        if bundle.litert_model is None:
            raise BundleError(
                f"bundle {bundle.model_id} has no LiteRT export (model.tflite): "
                "serve it with the keras runtime or train with --litert"
            )
        from ai_edge_litert.interpreter import Interpreter

        config = bundle.config
        expected = {
            "load": (1, config.window),
            "calendar": (1, config.horizon, config.calendar_width),
        }
        if config.use_temperature:
            expected["temperature"] = (1, config.window)
        try:
            interpreter = Interpreter(model_content=bundle.litert_model, num_threads=1)
            inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        except (ValueError, RuntimeError) as exc:
            raise _refusal(exc) from None
        # The shapes the file declares are checked before any tensor is allocated: a hostile
        # file declares gigabytes.
        self._inputs = _checked_inputs(inputs, expected)
        self._output = _checked_output(outputs, config.horizon)
        try:
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise _refusal(exc) from None
        allocated = sum(_tensor_bytes(detail) for detail in interpreter.get_tensor_details())
        if allocated > MAX_LITERT_TENSOR_BYTES:
            raise BundleError(
                f"{LITERT} allocates {allocated} bytes of tensors, more than the "
                f"{MAX_LITERT_TENSOR_BYTES} a bundle's model may"
            )
        self._model = bundle.litert_model
        self._horizon = config.horizon
        # Interpreters are not thread-safe: each request takes one of its own from the pool,
        # and concurrent requests get another one made, up to MAX_INTERPRETERS.
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._idle.put(interpreter)
        self._made = 1
        self._making = threading.Lock()

    def _interpreter(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._making:
            if self._made >= MAX_INTERPRETERS:
                return self._idle.get()
            self._made += 1
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self._model, num_threads=1)
        interpreter.allocate_tensors()  # the same file as the first one, already checked
        return interpreter

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One invoke per case (the model takes one at a time) on an interpreter of its own."""
        rows = len(inputs["load"])
        results = np.empty((rows, self._horizon), dtype=np.float32)
        interpreter = self._interpreter()
        try:
            for i in range(rows):
                for name, index in self._inputs.items():
                    interpreter.set_tensor(index, inputs[name][i : i + 1])
                interpreter.invoke()
                results[i] = interpreter.get_tensor(self._output)[0]
        finally:
            self._idle.put(interpreter)
        return results


def _refusal(exc: Exception) -> BundleError:
    """LiteRT's reason, on one line and cut short."""
    return BundleError(f"{LITERT} cannot be loaded by LiteRT: {' '.join(cut_short(exc).split())}")


def _shape(detail: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(n) for n in detail["shape"])


def _tensor_bytes(detail: dict[str, Any]) -> int:
    return math.prod(_shape(detail)) * np.dtype(detail["dtype"]).itemsize


def _checked_inputs(
    details: list[dict[str, Any]], expected: dict[str, tuple[int, ...]]
) -> dict[str, int]:
    """Tensor index of each input, after checking the inputs are the architecture's, float32,
    one case each."""
    inputs = {str(d["name"]).removeprefix("serving_default_").split(":")[0]: d for d in details}
    if set(inputs) != set(expected) or len(details) != len(expected):
        raise BundleError(f"{LITERT} inputs {shown(sorted(inputs))} are not {sorted(expected)}")
    for name, detail in inputs.items():
        if _shape(detail) != expected[name] or detail["dtype"] != np.float32:
            raise BundleError(
                f"{LITERT} input '{name}' is {np.dtype(detail['dtype']).name} of shape "
                f"{shown(_shape(detail))}; the architecture gives float32 of shape {expected[name]}"
            )
    return {name: int(detail["index"]) for name, detail in inputs.items()}


def _checked_output(details: list[dict[str, Any]], horizon: int) -> int:
    """Tensor index of the single output, after checking it is float32 of shape (1, horizon)."""
    if len(details) != 1:
        raise BundleError(f"{LITERT} has {len(details)} outputs, not the forecast alone")
    (detail,) = details
    if _shape(detail) != (1, horizon) or detail["dtype"] != np.float32:
        raise BundleError(
            f"{LITERT} output is {np.dtype(detail['dtype']).name} of shape "
            f"{shown(_shape(detail))}; the architecture gives float32 of shape (1, {horizon})"
        )
    return int(detail["index"])


def create_runtime(name: str, bundle: Bundle) -> Runtime:
    """The named runtime on ``bundle``."""
    if name == "keras":
        return KerasRuntime(bundle)
    if name == "litert":
        return LiteRTRuntime(bundle)
    raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
