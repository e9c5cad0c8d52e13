"""Compiled keras networks: the same forecasts as the Keras model, at every batch size; one
network per architecture shared by models that each keep their own weights; concurrent cases
run together."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgecast.architecture import SBNConfig, expected_weight_shapes
from edgecast.keras_networks import (
    BATCH,
    CHUNK,
    CaseBatcher,
    CompiledNetworks,
    compile_network,
    input_names,
)

CONFIG = SBNConfig(window=336, lag_days=10, horizon=12, boosters=2)


def random_weights(config: SBNConfig, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        path: rng.normal(0, 0.1, shape).astype(np.float32)
        for path, shape in expected_weight_shapes(config).items()
    }


def random_inputs(config: SBNConfig, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    shapes = {
        "load": (rows, config.window),
        "calendar": (rows, config.horizon, config.calendar_width),
        "temperature": (rows, config.window),
    }
    return {n: rng.normal(0, 1, shapes[n]).astype(np.float32) for n in input_names(config)}


def keras_forecasts(config: SBNConfig, weights: dict[str, np.ndarray], inputs) -> np.ndarray:
    """The reference: the Keras model itself, its variables assigned the same weights."""
    from edgecast.sbn import assign_weights, build_sbn

    model = build_sbn(config)
    assign_weights(model, config, weights)
    return np.asarray(model([inputs[n] for n in input_names(config)], training=False))


@pytest.fixture(scope="module")
def network():
    return compile_network(CONFIG)


@pytest.mark.parametrize("rows", [1, 2, BATCH, BATCH + 1, CHUNK, CHUNK + 5, 2 * CHUNK])
def test_the_compiled_network_forecasts_what_the_keras_model_does(network, rows):
    weights, inputs = random_weights(CONFIG, 1), random_inputs(CONFIG, rows)
    forecasts = network.predict(network.weights(weights), inputs)
    assert forecasts.shape == (rows, CONFIG.horizon)
    np.testing.assert_allclose(forecasts, keras_forecasts(CONFIG, weights, inputs), atol=2e-5)


def test_xla_compiles_the_network_and_its_call_skips_the_argument_binding(network):
    assert network.compiled
    assert network.flat, "TensorFlow's ConcreteFunction._call_flat is gone: requests pay 0.15 ms"


def test_models_of_one_architecture_share_the_network_and_keep_their_own_weights(network):
    networks = CompiledNetworks(build=lambda config: network)
    inputs = random_inputs(CONFIG, 1)
    first = networks.get(CONFIG)
    first_weights = first.weights(random_weights(CONFIG, 1))
    before = first.predict(first_weights, inputs)
    second = networks.get(CONFIG)
    second_weights = second.weights(random_weights(CONFIG, 2))
    assert second is first and networks.built == 1
    assert not np.allclose(second.predict(second_weights, inputs), before)
    np.testing.assert_array_equal(first.predict(first_weights, inputs), before)


def test_the_least_recently_used_architecture_is_dropped_past_the_limit():
    """A fake builder stands in for Keras: only the cache's bookkeeping is under test."""
    built: list[SBNConfig] = []

    def fake_build(config: SBNConfig) -> object:
        built.append(config)
        return object()

    networks = CompiledNetworks(build=fake_build)
    configs = [SBNConfig(horizon=h) for h in (12, 24, 36, 48, 60)]
    for config in configs[:4]:
        networks.get(config)
    networks.get(configs[0])  # used again: the oldest is now configs[1]
    networks.get(configs[4])  # past the limit of 4
    networks.get(configs[0])
    networks.get(configs[1])  # dropped, so built again
    assert built == [*configs[:5], configs[1]]


def test_concurrent_cases_get_their_own_forecasts(network):
    weights = network.weights(random_weights(CONFIG, 3))
    batcher = CaseBatcher(network, weights)
    cases = [{n: a[i : i + 1] for n, a in random_inputs(CONFIG, 24).items()} for i in range(24)]
    alone = [network.predict(weights, case) for case in cases]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            together = list(pool.map(batcher.forecast, cases))
            for mine, expected in zip(together, alone, strict=True):
                np.testing.assert_allclose(mine, expected, atol=1e-6)
    assert batcher.cases == 5 * len(cases)


class BlockingNetwork:
    """Fake network: its first call waits until released; records each call's cases."""

    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[float]] = []
        self.fail = fail

    def predict(self, weights: object, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.entered.set()
        self.release.wait(10)
        self.calls.append(inputs["load"][:, 0].tolist())
        if self.fail:
            raise RuntimeError("out of memory")
        return inputs["load"][:, :2] * 10


def one_case(value: float) -> dict[str, np.ndarray]:
    return {"load": np.full((1, 3), value, np.float32)}


def test_cases_queued_behind_a_call_run_together_in_the_next_one():
    network = BlockingNetwork()
    batcher = CaseBatcher(network, [])  # type: ignore[arg-type]
    with ThreadPoolExecutor(6) as pool:
        first = pool.submit(batcher.forecast, one_case(0))
        assert network.entered.wait(10)
        queued = [pool.submit(batcher.forecast, one_case(v)) for v in (1, 2, 3, 4, 5)]
        while batcher.queued < 5:
            time.sleep(0.001)
        network.release.set()
        results = [first.result(10), *(f.result(10) for f in queued)]
    # The lone first case ran alone; the five queued ran as one call of BATCH, then the rest.
    assert network.calls == [[0.0], [1.0, 2.0, 3.0, 4.0], [5.0]]
    assert [r.tolist() for r in results] == [[[v * 10, v * 10]] for v in range(6)]
    assert (batcher.calls, batcher.cases) == (3, 6)


def test_every_case_of_a_failed_call_gets_its_error_and_the_batcher_goes_on():
    network = BlockingNetwork(fail=True)
    batcher = CaseBatcher(network, [])  # type: ignore[arg-type]
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher.forecast, one_case(0))
        assert network.entered.wait(10)
        second = pool.submit(batcher.forecast, one_case(1))
        while not batcher.queued:
            time.sleep(0.001)
        network.release.set()
        for future in (first, second):
            with pytest.raises(RuntimeError, match="out of memory"):
                future.result(10)
    network.fail = False
    assert batcher.forecast(one_case(7)).tolist() == [[70.0, 70.0]]
