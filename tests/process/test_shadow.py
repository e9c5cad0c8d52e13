"""Shadow scoring on real ``edgecast serve`` processes: after a hot swap the previous model
forecasts the same real requests off the response path, and is scored exactly as a predictor
serving it would score it; a predictor started for a new model loads the old one to compare."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgecast.data import load_building
from edgecast_harness.paths import DATA

HOURS = 36
LAST = pd.Timestamp("2017-12-20 23:00", tz="UTC")
WINDOW = 600
UNLIMITED = ("--shadow-rate", "10000")  # these requests come faster than clients send hourly


def bodies(hours: int = HOURS) -> list[dict]:
    """Consecutive real hourly windows of b13, one hour apart."""
    frame = load_building("b13", DATA, weather_station=None)["load"]
    out = []
    for step in range(hours):
        loads = frame.loc[: LAST - pd.Timedelta(hours=hours - 1 - step)].iloc[-WINDOW:]
        stamp = loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append({"loads": [float(v) for v in loads], "last_timestamp": stamp, "series": "b13"})
    return out


def shadow_results(predictor) -> dict[str, float]:
    text = predictor.get("/metrics").text
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "edgecast_shadow_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def wait_scored(predictor, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while shadow_results(predictor).get("scored", 0) < count:
        assert time.monotonic() < deadline, shadow_results(predictor)
        time.sleep(0.1)


def assert_same(got: dict, want: dict) -> None:
    for key in ("mae", "mape", "bias"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9), (key, got, want)
    assert (got["pairs"], got["hours"]) == (want["pairs"], want["hours"])


def test_the_previous_model_is_scored_as_serving_it_would_be(trained_store, start_predictor):
    first, second = trained_store.model_ids
    store = trained_store.root
    shadowed = start_predictor(
        store, "--model-id", first, "--runtime", "litert", "--shadow", *UNLIMITED, admin=True
    )
    plain = start_predictor(store, "--model-id", first, "--runtime", "litert")
    assert shadowed.get("/v1/model").json()["shadow"] == {"model_id": None, "same_hours": None}
    assert plain.get("/v1/model").json()["shadow"] is None  # off unless asked for
    assert shadowed.admin("/admin/v1/models", {"model_id": second}).status_code == 200

    for body in bodies():
        answered = shadowed.post("/v1/predict", json=body)
        assert answered.status_code == 200 and answered.json()["model_id"] == second
        assert plain.post("/v1/predict", json=body).json()["model_id"] == first
    wait_scored(shadowed, HOURS)

    model = shadowed.get("/v1/model").json()
    live = model["live_accuracy"]["models"]
    as_served = plain.get("/v1/model").json()["live_accuracy"]["models"][first]
    for window in ("24h", "7d"):
        assert_same(live[first][window], as_served[window])
    assert live[first]["7d"]["pairs"] > 0
    shadow = model["shadow"]
    assert shadow["model_id"] == first
    same = shadow["same_hours"]
    assert same["serving"]["hours"] == same["shadow"]["hours"] == live[second]["7d"]["hours"]
    assert_same(same["serving"], live[second]["7d"])
    assert_same(same["shadow"], live[first]["7d"])
    assert shadow_results(shadowed) == {"scored": HOURS, "skipped": 0, "dropped": 0, "failed": 0}


def test_a_predictor_started_for_a_new_model_compares_it_with_the_old(
    trained_store, start_predictor
):
    first, second = trained_store.model_ids
    predictor = start_predictor(
        trained_store.root,
        "--model-id",
        second,
        "--runtime",
        "litert",
        "--shadow-model-id",
        first,
        *UNLIMITED,
    )
    model = predictor.get("/v1/model").json()
    assert (model["model_id"], model["previous"]["model_id"]) == (second, first)
    assert model["shadow"]["model_id"] == first
    for body in bodies(26):
        assert predictor.post("/v1/predict", json=body).json()["model_id"] == second
    wait_scored(predictor, 26)
    same = predictor.get("/v1/model").json()["shadow"]["same_hours"]
    assert same["serving"]["pairs"] == same["shadow"]["pairs"] > 0


def test_the_shadow_forecasts_at_most_its_rate(trained_store, start_predictor):
    first, second = trained_store.model_ids
    predictor = start_predictor(
        trained_store.root, "--model-id", second, "--runtime", "litert",
        "--shadow-model-id", first, "--shadow-rate", "5",
    )  # fmt: skip
    sent = bodies(40)
    started = time.monotonic()
    for body in sent:
        assert predictor.post("/v1/predict", json=body).status_code == 200
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 30
    while sum(shadow_results(predictor).values()) < len(sent):
        assert time.monotonic() < deadline, shadow_results(predictor)
        time.sleep(0.1)
    results = shadow_results(predictor)
    # a second of burst, then five a second
    assert 5 <= results["scored"] + results["dropped"] <= 5 + 5 * elapsed + 1, (results, elapsed)
    assert results["skipped"] == len(sent) - results["scored"] - results["dropped"] > 0


def test_a_shadow_model_that_cannot_be_loaded_leaves_the_predictor_serving(
    trained_store, start_predictor
):
    first = trained_store.model_ids[0]
    predictor = start_predictor(
        trained_store.root, "--model-id", first, "--runtime", "litert", "--shadow-model-id", "nope"
    )
    model = predictor.get("/v1/model").json()
    assert model["model_id"] == first and model["shadow"]["model_id"] is None
    assert predictor.post("/v1/predict", json=bodies(1)[0]).status_code == 200
    assert "no model in shadow: nope could not be loaded" in predictor.log()
