"""Inference runtimes: ``keras`` (the reference) and ``litert`` (lightweight, no TensorFlow).

Both take the same named float32 inputs and return scaled forecasts. The hot path calls a
compiled function or the interpreter directly, never ``model.predict`` (tens of ms of framework
overhead per call). Frameworks are imported only when their runtime is chosen, so a LiteRT
predictor never loads TensorFlow.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

import numpy as np

from edgecast.bundle import Bundle, BundleError

RUNTIMES = ("keras", "litert")


class Runtime(Protocol):
    name: str

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class KerasRuntime:
    """Rebuilds the network from the architecture and assigns the bundle's weights."""

    name = "keras"

    def __init__(self, bundle: Bundle) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from edgecast.sbn import assign_weights, build_sbn

        config = bundle.config
        model = build_sbn(config)
        assign_weights(model, config, bundle.weights)
        self.input_names = ["load", "calendar"] + (
            ["temperature"] if config.use_temperature else []
        )
        shapes = {
            "load": (None, config.window),
            "calendar": (None, config.horizon, config.calendar_width),
            "temperature": (None, config.window),
        }
        signature = [tf.TensorSpec(shapes[n], tf.float32, name=n) for n in self.input_names]
        # A concrete function skips tf.function's per-call argument binding (~0.6 ms a request).
        self._call = tf.function(
            lambda *xs: model(list(xs), training=False), input_signature=signature
        ).get_concrete_function()
        self.model = model

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._call(*(inputs[n] for n in self.input_names)).numpy()


class LiteRTRuntime:
    """Runs the bundle's ``model.tflite`` with ai-edge-litert; one interpreter behind a lock."""

    name = "litert"

    def __init__(self, bundle: Bundle) -> None:
        if bundle.litert_model is None:
            raise BundleError(
                f"bundle {bundle.model_id} has no LiteRT export (model.tflite): "
                "serve it with the keras runtime or train with --litert"
            )
        from ai_edge_litert.interpreter import Interpreter

        try:
            interpreter = Interpreter(model_content=bundle.litert_model, num_threads=1)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"model.tflite cannot be loaded by LiteRT: {exc}") from None
        self._inputs: dict[str, int] = {}
        for detail in interpreter.get_input_details():
            name = detail["name"].removeprefix("serving_default_").split(":")[0]
            self._inputs[name] = detail["index"]
        expected = {"load", "calendar"} | (
            {"temperature"} if bundle.config.use_temperature else set()
        )
        if set(self._inputs) != expected:
            raise BundleError(
                f"model.tflite inputs {sorted(self._inputs)} are not {sorted(expected)}"
            )
        self._output = interpreter.get_output_details()[0]["index"]
        self._interpreter = interpreter
        self._lock = threading.Lock()

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        rows = len(inputs["load"])
        results = []
        with self._lock:
            for i in range(rows):
                for name, index in self._inputs.items():
                    self._interpreter.set_tensor(index, inputs[name][i : i + 1])
                self._interpreter.invoke()
                results.append(self._interpreter.get_tensor(self._output)[0].copy())
        return np.stack(results)


def create_runtime(name: str, bundle: Bundle) -> Runtime:
    if name == "keras":
        return KerasRuntime(bundle)
    if name == "litert":
        return LiteRTRuntime(bundle)
    raise ValueError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
