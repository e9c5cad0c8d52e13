"""Window normalization: each request is seen in its own frame, and the forecast leaves it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecast.architecture import ArchitectureError, SBNConfig
from edgecast.features import Scaling, load_frame, model_inputs, to_frame, to_kwh

SCALING = Scaling(load_mean=50.0, load_std=10.0)
WINDOW = SBNConfig(normalization="window")
GLOBAL = SBNConfig(normalization="global")


def windows(n: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = np.arange(600)
    daily = 40 + 15 * np.sin(2 * np.pi * hours / 24)
    return daily + rng.normal(0, 2, (n, 600))


def test_a_building_at_another_level_gets_the_same_inputs_and_a_forecast_at_its_level():
    loads, stamps = windows(), np.array([1_500_000_000 - 3600] * 3)
    outputs = np.random.default_rng(1).normal(size=(3, 24)).astype(np.float32)
    same = model_inputs(WINDOW, SCALING, loads, stamps)
    moved = model_inputs(WINDOW, SCALING, 2.5 * loads + 30, stamps)
    np.testing.assert_allclose(same["load"], moved["load"], atol=1e-5)
    np.testing.assert_allclose(
        to_kwh(WINDOW, SCALING, 2.5 * loads + 30, outputs),
        2.5 * to_kwh(WINDOW, SCALING, loads, outputs) + 30,
    )
    # The global frame ties the inputs to the training period's level instead.
    assert not np.allclose(
        model_inputs(GLOBAL, SCALING, loads, stamps)["load"],
        model_inputs(GLOBAL, SCALING, 2.5 * loads + 30, stamps)["load"],
    )


def test_targets_and_forecasts_round_trip_through_the_frame():
    loads = windows()
    targets = loads[:, -24:] + 5
    for config in (WINDOW, GLOBAL):
        frame = to_frame(config, SCALING, loads, targets)
        np.testing.assert_allclose(to_kwh(config, SCALING, loads, frame), targets, rtol=1e-6)


def test_a_flat_window_is_divided_by_a_floor_not_by_zero():
    level, spread = load_frame(WINDOW, SCALING, np.full((1, 600), 7.0))
    assert level[0, 0] == 7.0 and spread[0, 0] == pytest.approx(0.5)
    assert np.isfinite(model_inputs(WINDOW, SCALING, np.zeros((1, 600)), np.zeros(1))["load"]).all()


def test_architecture_version_1_is_read_as_the_global_frame_and_version_2_names_it():
    old = {k: v for k, v in GLOBAL.to_dict().items() if k != "normalization"} | {"version": 1}
    assert SBNConfig.from_dict(old).normalization == "global"
    assert SBNConfig.from_dict(json.loads(json.dumps(WINDOW.to_dict()))) == WINDOW
    with pytest.raises(ArchitectureError, match="unknown hyper-parameter"):
        SBNConfig.from_dict(old | {"normalization": "window"})
    with pytest.raises(ArchitectureError, match="versions 1, 2"):
        SBNConfig.from_dict(WINDOW.to_dict() | {"version": 3})
    with pytest.raises(ArchitectureError, match="not one of global, window"):
        SBNConfig(normalization="median")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 600), (5, 600), (3, 1000), (2, 400)])
def test_the_frame_is_numpys_mean_and_std_bit_for_bit(
    shape: tuple[int, int], dtype: type[np.floating]
) -> None:
    """The frame skips numpy's Python wrappers; the bundles' reference outputs were made with
    mean and std, so the frame must not move by a single bit."""
    rng = np.random.default_rng(shape[0])
    loads = (rng.random(shape) * 300 + rng.integers(0, 5000)).astype(dtype)
    config = SBNConfig(normalization="window", window=shape[1])
    recent = loads[:, -min(168, shape[1]) :]
    level, spread = load_frame(config, SCALING, loads)
    assert np.array_equal(level, recent.mean(axis=1, keepdims=True))
    assert np.array_equal(spread, np.maximum(recent.std(axis=1, keepdims=True), 0.5))


def test_a_frame_given_by_the_caller_gives_the_same_inputs_and_kwh() -> None:
    loads, stamps = windows(), np.array([1_500_000_000 - 3600] * 3)
    outputs = np.random.default_rng(2).normal(size=(3, 24)).astype(np.float32)
    frame = load_frame(WINDOW, SCALING, loads)
    for name, array in model_inputs(WINDOW, SCALING, loads, stamps, frame=frame).items():
        assert np.array_equal(array, model_inputs(WINDOW, SCALING, loads, stamps)[name])
    assert np.array_equal(
        to_kwh(WINDOW, SCALING, loads, outputs, frame=frame),
        to_kwh(WINDOW, SCALING, loads, outputs),
    )
