"""Live accuracy on a real ``edgecast serve`` process: consecutive real hourly windows of two
buildings replayed one request per hour, a hot swap half-way, and a client correcting one
hour's data; ``GET /v1/model`` and ``/metrics`` must give exactly the figures computed here
from the forecasts the predictor answered and the shipped data."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgecast.data import load_building
from edgecast_harness.paths import DATA

HOURS = 60
SWAP_AT = 30  # requests 0..29 answered by the first model, 30.. by the second
LAST = pd.Timestamp("2017-12-20 23:00", tz="UTC")
WINDOW = 600
SERIES = ("b13", "b4")  # each its own building's loads, in one predictor
CORRECTED = 45  # the hour whose actual b13's client corrects at the end (in the last 24 h)
CORRECTION_KWH = 10.0
WINDOWS = {"24h": 24, "7d": 168}


@dataclass(frozen=True)
class Issued:
    series: str
    model_id: str
    issue_hour: int
    forecast: list[float]


def epoch_hour(stamp: pd.Timestamp) -> int:
    return int(stamp.timestamp()) // 3600


def request(loads: pd.Series, series: str) -> dict:
    return {
        "loads": [float(v) for v in loads],
        "last_timestamp": loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        "series": series,
    }


def offline_figures(
    issued: list[Issued], actuals: dict[str, dict[int, float]], newest: int
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Every model's figures by window, from the forecasts the predictor answered: the latest
    forecast per (series, model, issue hour), each lead whose hour has an actual."""
    latest = {(i.series, i.model_id, i.issue_hour): i.forecast for i in issued}
    figures: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for model_id in sorted({i.model_id for i in issued}):
        figures[model_id] = {}
        for name, length in WINDOWS.items():
            errors, relative, hours = [], [], set()
            for (series, model, issue), forecast in latest.items():
                for lead, value in enumerate(forecast, 1):
                    hour = issue + lead
                    if model == model_id and newest - length < hour <= newest:
                        actual = actuals[series][hour]
                        errors.append(value - actual)
                        relative.append(abs(value - actual) / actual)
                        hours.add((series, hour))
            figures[model_id][name] = {
                "mae": sum(map(abs, errors)) / len(errors),
                "mape": 100 * sum(relative) / len(relative),
                "bias": sum(errors) / len(errors),
                "pairs": len(errors),
                "hours": len(hours),
            }
    return figures


def assert_close(got: dict, want: dict) -> None:
    for key in ("mae", "mape", "bias"):
        assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9), key
    assert (got["pairs"], got["hours"]) == (want["pairs"], want["hours"])


def test_live_accuracy_matches_the_forecasts_answered(trained_store, start_predictor):
    first, second = trained_store.model_ids
    predictor = start_predictor(
        trained_store.root, "--model-id", first, "--runtime", "litert", admin=True
    )
    loads = {series: load_building(series, DATA, weather_station=None)["load"] for series in SERIES}
    start = LAST - pd.Timedelta(hours=HOURS - 1)
    issued: list[Issued] = []

    def send(body: dict) -> None:
        response = predictor.post("/v1/predict", json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        issue = epoch_hour(pd.Timestamp(body["last_timestamp"]))
        issued.append(Issued(body["series"], answer["model_id"], issue, answer["forecast_kwh"]))

    for step in range(HOURS):
        if step == SWAP_AT:
            assert predictor.admin("/admin/v1/models", {"model_id": second}).status_code == 200
        if step == 10:  # a bad series name: a JSON 400, and the predictor serves on
            bad = predictor.post("/v1/predict", json=request(loads["b13"].iloc[-WINDOW:], "b 13"))
            assert bad.status_code == 400
            assert bad.headers["Content-Type"] == "application/json"
            assert "'series'" in bad.json()["error"]
        last = start + pd.Timedelta(hours=step)
        for series in SERIES:
            window = loads[series].loc[:last].iloc[-WINDOW:]
            assert len(window) == WINDOW and not window.isna().any()
            send(request(window, series))

    # b13's client corrects one hour of its data; the last request is sent again with it.
    corrected_at = start + pd.Timedelta(hours=CORRECTED)
    window = loads["b13"].loc[:LAST].iloc[-WINDOW:].copy()
    window[corrected_at] += CORRECTION_KWH
    send(request(window, "b13"))

    actuals = {
        series: {epoch_hour(t): float(v) for t, v in loads[series].loc[start:LAST].items()}
        for series in SERIES
    }
    actuals["b13"][epoch_hour(corrected_at)] += CORRECTION_KWH
    want = offline_figures(issued, actuals, epoch_hour(LAST))
    assert set(want) == {first, second}

    model = predictor.get("/v1/model").json()
    assert model["model_id"] == second
    live = model["live_accuracy"]
    assert set(live["models"]) == {first, second}  # the model swapped out keeps its figures
    assert live["series"]["tracked"] == 2
    for model_id, windows in want.items():
        for name, figures in windows.items():
            assert_close(live["models"][model_id][name], figures)
        # Both models forecast the corrected hour (the first up to request 29, the second
        # from request 30): one correction each, and the pairs counted once.
        assert live["models"][model_id]["corrections"] == 1
        assert live["models"][model_id]["pairs_scored"] == windows["7d"]["pairs"]

    metrics = {
        family.name: {
            tuple(sorted(sample.labels.items())): sample.value for sample in family.samples
        }
        for family in text_string_to_metric_families(predictor.get("/metrics").text)
    }
    for model_id, windows in want.items():
        for name, figures in windows.items():
            labels = (("model_id", model_id), ("window", name))
            for metric, key in (
                ("edgecast_live_mae_kwh", "mae"),
                ("edgecast_live_mape_percent", "mape"),
                ("edgecast_live_bias_kwh", "bias"),
                ("edgecast_live_pairs", "pairs"),
                ("edgecast_live_hours", "hours"),
            ):
                assert metrics[metric][labels] == pytest.approx(figures[key], rel=1e-9, abs=1e-9)
        labels = (("model_id", model_id),)
        assert metrics["edgecast_live_scored_pairs"][labels] == windows["7d"]["pairs"]
        assert metrics["edgecast_live_corrections"][labels] == 1
    assert metrics["edgecast_live_series"][()] == 2
