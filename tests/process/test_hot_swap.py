"""Hot swap under steady load from another process: no failed request, and the served model
changes exactly when the swap's response arrives (a request reads the model once and finishes on
it; the new model becomes current only after it is loaded and verified)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgecast_harness.bodies import window_from_data
from edgecast_harness.load_client import LoadProcess

SWAPS = 20
LOAD_DURATION_S = 240  # upper bound only: the client is stopped once the swaps are done
LOAD_MAX_REQUESTS = 50_000
MAX_SWAP_S = 5.0


@dataclass
class Swap:
    target: str
    previous: str
    sent: float  # time.time() just before the POST
    answered: float  # time.time() just after the response was read
    status: int
    body: dict


def test_hot_swap_under_load_from_another_process(trained_store, start_predictor, tmp_path):
    first, second = trained_store.model_ids
    predictor = start_predictor(trained_store.root, "--model-id", first, admin=True)
    assert predictor.get("/readyz").json()["model_id"] == first

    load = LoadProcess(
        predictor.url,
        tmp_path / "requests.jsonl",
        duration=LOAD_DURATION_S,
        max_requests=LOAD_MAX_REQUESTS,
    )
    swaps: list[Swap] = []
    with load.start(wait_for=20):  # steady load before the first swap
        serving = first
        for i in range(SWAPS):
            target = (second, first)[i % 2]
            sent = time.time()
            response = predictor.admin("/admin/v1/models", {"model_id": target})
            answered = time.time()
            swaps.append(
                Swap(target, serving, sent, answered, response.status_code, response.json())
            )
            assert response.status_code == 200, response.text
            serving = target
            time.sleep(0.3)  # some requests strictly between two swaps
        time.sleep(0.5)
        assert load.running, "the load client stopped before the swaps were done"
    assert load.stop() == 0, load.log.read_text()
    records = load.records()

    for i, swap in enumerate(swaps):
        print(
            f"swap {i:2d}: {swap.previous} -> {swap.target}: HTTP {swap.status} in "
            f"{swap.answered - swap.sent:.3f} s (server load+verify "
            f"{swap.body.get('load_seconds')} s)"
        )
    print(f"{len(records)} requests from the load client")

    # Every swap succeeded, reported the right models, and took a bounded time.
    assert [s.status for s in swaps] == [200] * SWAPS
    for swap in swaps:
        assert swap.body["model_id"] == swap.target
        assert swap.body["previous_model_id"] == swap.previous
        assert swap.answered - swap.sent < MAX_SWAP_S, swap

    # Zero failed requests, and a steady load of some hundreds of them.
    failed = [r for r in records if r["status"] != 200]
    assert not failed, f"{len(failed)} failed requests, e.g. {failed[:5]}"
    assert len(records) >= 300, len(records)
    assert {r["model_id"] for r in records} == {first, second}

    # The served model changes exactly when the swap completes.
    never = float("inf")
    for i, swap in enumerate(swaps):
        next_sent = swaps[i + 1].sent if i + 1 < SWAPS else never
        # Started after swap i's response and before swap i+1 was sent: swap i's target.
        after = [r for r in records if swap.answered <= r["start"] < next_sent]
        assert after, f"no request between swap {i} and swap {i + 1}"
        wrong = [r for r in after if r["model_id"] != swap.target]
        assert not wrong, f"after swap {i} to {swap.target}: {wrong[:3]}"
        # Ended before swap i was sent (and started after swap i-1 answered): the previous model.
        prev_answered = swaps[i - 1].answered if i else 0.0
        before = [r for r in records if r["end"] <= swap.sent and r["start"] >= prev_answered]
        assert before, f"no request just before swap {i}"
        wrong = [r for r in before if r["model_id"] != swap.previous]
        assert not wrong, f"before swap {i} from {swap.previous}: {wrong[:3]}"
        # While the new model loads, the old one keeps answering: requests that lie wholly
        # inside the swap may only be served by one of the two models.
        during = [r for r in records if r["start"] >= swap.sent and r["end"] <= swap.answered]
        assert {r["model_id"] for r in during} <= {swap.previous, swap.target}

    # The load was not paused by the swaps: the old model answered during the loading.
    answered_during = sum(
        1
        for swap in swaps
        for r in records
        if r["start"] >= swap.sent and r["end"] <= swap.answered and r["model_id"] == swap.previous
    )
    assert answered_during >= SWAPS, answered_during

    # After the swaps the predictor reports the last target, with the one before as previous.
    model = predictor.get("/v1/model").json()
    assert model["model_id"] == swaps[-1].target
    assert model["previous"]["model_id"] == swaps[-1].previous
    metrics = predictor.get("/metrics").text
    assert f'edgecast_model_swaps_total{{result="loaded"}} {float(SWAPS)}' in metrics


def test_keras_swaps_keep_each_model_s_own_forecasts(trained_store, start_predictor):
    """Models of one architecture share one compiled network (tests/unit/test_keras_networks.py),
    each on weights of its own, so a model swapped out, rolled back to or swapped in again
    forecasts exactly what it forecast before."""
    first, second = trained_store.model_ids
    predictor = start_predictor(
        trained_store.root, "--model-id", first, "--runtime", "keras", admin=True
    )
    body = window_from_data()

    def served() -> tuple[str, list[float]]:
        response = predictor.post("/v1/predict", json=body)
        assert response.status_code == 200, response.text
        return response.json()["model_id"], response.json()["forecast_kwh"]

    forecasts = dict([served()])
    steps = [
        ("/admin/v1/models", {"model_id": second}, second),
        ("/admin/v1/models", {"model_id": first}, first),
        ("/admin/v1/models", {"model_id": second}, second),
        ("/admin/v1/rollback", None, first),
        ("/admin/v1/rollback", None, second),
    ]
    for path, request, expected in steps:
        response = predictor.admin(path, request)
        assert response.status_code == 200, response.text
        model_id, forecast = served()
        assert model_id == expected
        assert forecast == forecasts.setdefault(model_id, forecast), (path, model_id)
    assert forecasts[first] != forecasts[second]
    log = predictor.log()
    assert "XLA cannot compile" not in log, log
