"""Training on the shipped data gives a bundle that a fresh predictor process loads and serves."""

from __future__ import annotations

import math

from edgecast_harness.bodies import window_from_data
from edgecast_harness.bundle_faults import read_manifest
from edgecast_harness.predictor import edgecast


def test_trained_bundle_is_complete_and_beats_seasonal_naive(trained_store):
    bundle = trained_store.root / trained_store.model_ids[0]
    manifest = read_manifest(bundle)
    assert set(manifest["files"]) == {
        "architecture.json",
        "weights.npz",
        "scaling.json",
        "reference.npz",
        "model.tflite",
    }
    metrics = manifest["metrics"]
    assert set(metrics) == {"sbn", "seasonal_naive", "linear"}
    for row in metrics.values():
        assert {"mae", "rmse", "mape", "cv_rmse"} <= set(row)
        assert all(math.isfinite(row[k]) for k in ("mae", "rmse", "mape", "cv_rmse"))
    # Held-out time comes after the training period.
    assert (
        manifest["training"]["test"]["first_target"] > manifest["training"]["train"]["last_target"]
    )
    assert metrics["sbn"]["mae"] < metrics["seasonal_naive"]["mae"]


def test_verify_cli_accepts_a_trained_bundle_on_both_runtimes(trained_store):
    result = edgecast("verify", str(trained_store.root / trained_store.model_ids[0]))
    assert "keras: parity ok" in result.stdout
    assert "litert: parity ok" in result.stdout


def test_fresh_predictor_process_serves_the_trained_bundle(trained_store, start_predictor):
    for runtime in ("keras", "litert"):
        model_id = trained_store.model_ids[0]
        predictor = start_predictor(
            trained_store.root, "--model-id", model_id, "--runtime", runtime
        )
        body = window_from_data()
        response = predictor.post("/v1/predict", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_id"] == model_id
        assert answer["runtime"] == runtime
        assert len(answer["forecast_kwh"]) == 24
        assert answer["timestamps"][0] == "2017-12-21T00:00:00Z"
        # A real forecast of this building: positive and of the series' magnitude.
        mean_load = sum(body["loads"]) / len(body["loads"])
        assert all(0.2 * mean_load < v < 3 * mean_load for v in answer["forecast_kwh"])
