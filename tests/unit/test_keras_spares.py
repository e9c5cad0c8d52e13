"""SpareNetworks' bookkeeping, with a fake builder standing in for Keras (the unit tier loads
no TensorFlow; tests/process/test_hot_swap.py swaps real keras networks over HTTP)."""

from __future__ import annotations

import threading

from edgecast.architecture import SBNConfig
from edgecast.keras_networks import SpareNetworks, TracedNetwork


class FakeBuilder:
    """Fake: returns a fresh, distinguishable TracedNetwork per call and records the calls."""

    def __init__(self, fail_in_background: bool = False) -> None:
        self.calls: list[tuple[SBNConfig, str]] = []
        self.fail_in_background = fail_in_background

    def __call__(self, config: SBNConfig) -> TracedNetwork:
        thread = threading.current_thread().name
        self.calls.append((config, thread))
        if self.fail_in_background and thread == "edgecast-keras-spare":
            raise RuntimeError("out of memory")
        return TracedNetwork(model=object(), call=config, input_names=("load", "calendar"))


def test_a_take_of_the_prepared_architecture_gets_the_spare_and_no_network_is_shared():
    builder, config = FakeBuilder(), SBNConfig()
    spares = SpareNetworks(builder)
    taken = [spares.take(config)]
    for _ in range(2):
        spares.prepare(config)  # as the predictor does after each load
        assert spares.wait(10)
        taken.append(spares.take(config))
    assert (spares.built_on_demand, spares.taken_ready) == (1, 2)
    # No network is handed out twice: each runtime owns the weights it assigns.
    assert len({id(n.model) for n in taken}) == 3
    assert [thread for _, thread in builder.calls].count("edgecast-keras-spare") == 2


def test_another_architecture_is_built_on_demand():
    builder = FakeBuilder()
    small, large = SBNConfig(boosters=1), SBNConfig(boosters=3)
    spares = SpareNetworks(builder)
    spares.prepare(small)
    network = spares.take(large)  # waits for the small spare, which does not fit
    assert network.call == large
    assert (spares.built_on_demand, spares.taken_ready) == (1, 0)


def test_after_a_refused_load_the_serving_architectures_spare_is_built_again():
    builder = FakeBuilder()
    serving, hostile = SBNConfig(boosters=3), SBNConfig(boosters=1)
    spares = SpareNetworks(builder)
    spares.prepare(serving)
    spares.take(hostile)  # a bundle of another architecture, refused by its parity gate
    spares.prepare()  # what the predictor's loader does on a refusal
    assert spares.wait(10)
    assert spares.take(serving).call == serving
    assert spares.taken_ready == 1
    assert [c for c, thread in builder.calls if thread == "edgecast-keras-spare"] == [serving] * 2


def test_a_spare_that_cannot_be_built_leaves_the_next_take_to_build_its_own():
    builder, config = FakeBuilder(fail_in_background=True), SBNConfig()
    spares = SpareNetworks(builder)
    spares.prepare(config)
    assert spares.wait(10)
    assert spares.take(config).call == config
    assert (spares.built_on_demand, spares.taken_ready) == (1, 0)
