"""The SBN-style network in Keras (cloud training and the edge's ``keras`` runtime).

See ``edgecast.architecture`` for the design; this module only builds it and moves weights.
"""

from __future__ import annotations

import keras
import numpy as np

from edgecast.architecture import SBNConfig, expected_weight_shapes, step_indices


class StepGather(keras.layers.Layer):
    """Gathers, for each horizon step, the window positions that step reads (see step_indices)."""

    def __init__(self, indices: np.ndarray, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.indices = np.asarray(indices, dtype="int32")

    def call(self, window: object) -> object:
        return keras.ops.take(window, self.indices, axis=1)

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], *self.indices.shape)


def build_sbn(config: SBNConfig) -> keras.Model:
    load = keras.Input((config.window,), name="load")
    calendar = keras.Input((config.horizon, config.calendar_width), name="calendar")
    inputs = [load, calendar]
    context_in = load
    if config.use_temperature:
        temperature = keras.Input((config.window,), name="temperature")
        inputs.append(temperature)
        context_in = keras.layers.Concatenate(name="context_input")([load, temperature])

    lags = StepGather(step_indices(config), name="step_inputs")(load)
    step_features = keras.layers.Concatenate(name="step_features")([lags, calendar])
    context = keras.layers.Dense(config.context_units, activation="relu", name="context")(
        context_in
    )
    context_steps = keras.layers.RepeatVector(config.horizon, name="context_steps")(context)

    forecast = keras.layers.Dense(1, name="base")(step_features)
    for i in range(config.boosters):
        booster_in = keras.layers.Concatenate(name=f"booster_{i}_input")(
            [forecast, step_features, context_steps]
        )
        hidden = keras.layers.Dense(
            config.booster_units, activation="relu", name=f"booster_{i}_hidden"
        )(booster_in)
        correction = keras.layers.Dense(1, kernel_initializer="zeros", name=f"booster_{i}_out")(
            hidden
        )
        forecast = keras.layers.Add(name=f"booster_{i}")([forecast, correction])
    output = keras.layers.Reshape((config.horizon,), name="forecast")(forecast)
    return keras.Model(inputs, output, name="sbn")


def weights_of(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v.numpy()) for v in model.weights}


def assign_weights(model: keras.Model, config: SBNConfig, weights: dict[str, np.ndarray]) -> None:
    """Assigns by name after checking the layout, so a wrong bundle fails before it is used."""
    expected = expected_weight_shapes(config)
    actual = {v.path: tuple(v.shape) for v in model.weights}
    if actual != expected:
        raise RuntimeError(f"network layout {actual} differs from the architecture {expected}")
    for variable in model.weights:
        variable.assign(weights[variable.path])
