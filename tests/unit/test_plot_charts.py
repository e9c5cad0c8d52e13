"""``edgecast plot``'s parts: the PNG a chart becomes, what a bundle's and a request's charts
show, the held-out period made again from the golden bundle, and a request forecast here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest

from edgecast.bundle import load_bundle
from edgecast.data import DEFAULT_DATA_DIR
from edgecast.forecaster import Forecaster, load_forecaster
from edgecast.plot import chart as chart_module
from edgecast.plot.chart import Chart, Line, epoch_hours, save_png
from edgecast.plot.figures import MODEL_COLOR, NAIVE_COLOR, bundle_chart, request_chart
from edgecast.plot.heldout import HeldOut, HeldOutError, held_out
from edgecast.plot.request import (
    RequestForecast,
    RequestForecastError,
    forecast_locally,
    read_request,
)

HOUR = 3600
DAY_SECONDS = 24 * HOUR
T0 = 1_509_926_400  # 2017-11-06T00:00Z


def _pixels(path: Path) -> np.ndarray:
    """The PNG's RGB values, 0..1."""
    return matplotlib.image.imread(path)[..., :3]


def _where(pixels: np.ndarray, color: str, tolerance: float = 0.08) -> np.ndarray:
    """(row, column) of the pixels drawn in ``color`` (a line's core; edges are blended)."""
    rgb = np.asarray(matplotlib.colors.to_rgb(color))
    return np.argwhere(np.abs(pixels - rgb).max(axis=-1) < tolerance)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def _sine_chart() -> Chart:
    times = epoch_hours(T0 + HOUR * np.arange(72))
    values = 50 + 20 * np.sin(np.arange(72) / 24 * 2 * np.pi)
    return Chart(
        "a title",
        (Line("actual", times, values), Line("model", times, values + 5, MODEL_COLOR)),
    )


def test_a_chart_becomes_a_png_of_its_size_with_its_lines(tmp_path: Path) -> None:
    out = save_png(_sine_chart(), tmp_path / "sine.png")
    pixels = _pixels(out)
    assert pixels.shape == (450, 1000, 3)  # 10 x 4.5 inches at 100 dpi
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, "a blank image"
    blue = _where(pixels, MODEL_COLOR)
    assert len(blue) > 500, "the model's line is not drawn"
    # The line runs across the axes, not only in the legend.
    assert np.ptp(blue[:, 1]) > 700
    assert out.stat().st_size < 150_000
    assert _leftovers(tmp_path) == []


def test_a_png_is_written_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "kept.png"
    save_png(_sine_chart(), out)
    before = out.read_bytes()

    class HalfWritten:
        def save(self, stream: object, **_: object) -> None:
            stream.write(before[:100])  # type: ignore[attr-defined]
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(chart_module, "_png", lambda figure: HalfWritten())
    with pytest.raises(OSError, match="No space left"):
        save_png(_sine_chart(), out)
    assert out.read_bytes() == before, "a failed write replaced the complete PNG"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["missing/folder/x.png", "a-folder"])
def test_an_output_that_cannot_be_written_leaves_nothing(tmp_path: Path, where: str) -> None:
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(OSError, match=r"No such file or directory|Is a directory"):
        save_png(_sine_chart(), tmp_path / where)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder"]
    assert list((tmp_path / "a-folder").iterdir()) == []


def test_lines_of_different_lengths_are_refused_before_any_file(tmp_path: Path) -> None:
    times = epoch_hours(T0 + HOUR * np.arange(3))
    chart = Chart("t", (Line("short", times, np.ones(2)),))
    with pytest.raises(ValueError, match="3 times and 2 values"):
        save_png(chart, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def _held(windows: int = 48, horizon: int = 24) -> HeldOut:
    """Windows ending every hour from T0; the forecasts miss the actuals by 1, 2 and 3 kWh."""
    last = T0 + HOUR * np.arange(windows, dtype=np.int64) - HOUR
    actuals = 50 + (last[:, None] // HOUR + np.arange(1, horizon + 1)[None, :]) % 24
    actuals = actuals.astype(np.float64)
    return HeldOut(
        "sbn-b13-test",
        "b13",
        last,
        actuals,
        {"sbn": actuals + 1, "seasonal_naive": actuals - 2, "linear": actuals + 3},
    )


def test_each_hour_is_shown_with_the_forecasts_made_step_hours_before_it() -> None:
    held = _held()
    hours, values = held.at_step(6, T0, T0 + 3 * 24 * HOUR)
    assert len(hours) == 72
    # The first window ends at T0 - 1 h: its 6th step is T0 + 5 h; earlier hours have none.
    assert np.isnan(values["actual"][:5]).all()
    for i in (5, 20, 52):
        window = int(np.flatnonzero(held.last_timestamps + 6 * HOUR == hours[i])[0])
        assert values["actual"][i] == held.actuals[window, 5]
        assert values["sbn"][i] == held.actuals[window, 5] + 1
    # 48 windows: the last one's 6th step is T0 + 52 h; later hours are a gap.
    assert np.isfinite(values["actual"][5:53]).all()
    assert np.isnan(values["actual"][53:]).all()
    with pytest.raises(HeldOutError, match="between 1 and the horizon, 24"):
        held.at_step(25, T0, T0 + DAY_SECONDS)


def test_the_bundle_chart_names_the_model_and_the_mae_figures() -> None:
    chart = bundle_chart(_held(), 24, T0, T0 + 2 * DAY_SECONDS)
    assert chart.title.startswith("sbn-b13-test: building b13, held-out forecasts 24 h ahead")
    assert "model 1.00, seasonal naive 2.00, linear 3.00 kWh" in chart.title
    labels = [line.label for line in chart.lines]
    assert labels == [
        "actual",
        "model (MAE 1.00 kWh here)",
        "seasonal naive (MAE 2.00 kWh here)",
        "linear (ridge) (MAE 3.00 kWh here)",
    ]


def _request(loads: np.ndarray, forecast: np.ndarray) -> RequestForecast:
    return RequestForecast("sbn-b13-test", "litert", loads, T0 + 599 * HOUR, forecast, "b13")


def test_the_request_chart_draws_the_forecast_after_the_history(tmp_path: Path) -> None:
    loads = 50 + 10 * np.sin(np.arange(600) / 24 * 2 * np.pi)
    chart = request_chart(_request(loads, np.full(24, 80.0)), hours=168)
    history, forecast, naive = chart.lines
    assert len(history.values) == 168 and history.times[-1] == epoch_hours(T0 + 599 * HOUR)
    assert forecast.times[0] == epoch_hours(T0 + 600 * HOUR) and len(forecast.values) == 24
    np.testing.assert_array_equal(naive.values, loads[-168:-144])  # same hours last week
    assert "series b13" in chart.title and "1920.0 kWh over 24 h" in chart.title

    pixels = _pixels(save_png(chart, tmp_path / "request.png"))
    plot_area = pixels[:380]  # above the legend, which is below the axes
    blue, orange = _where(plot_area, MODEL_COLOR), _where(plot_area, NAIVE_COLOR)
    width = pixels.shape[1]
    assert len(blue) > 100 and len(orange) > 20
    # 24 of the 192 hours shown: the forecast's pixels are all in the last eighth or so.
    assert blue[:, 1].min() > 0.8 * width
    assert orange[:, 1].min() > 0.8 * width
    # The forecast of 80 kWh is drawn above the middle of the history's 40..60 kWh.
    assert np.median(blue[:, 0]) < 0.4 * 380


def test_a_short_request_has_no_seasonal_naive_line() -> None:
    chart = request_chart(_request(np.full(100, 5.0), np.full(24, 6.0)), hours=168)
    assert [line.label for line in chart.lines] == [
        "request's loads (last 100 h)",
        "forecast (24 h)",
    ]


@pytest.fixture(scope="module")
def golden_forecaster(golden_bundle: Path) -> Forecaster:
    forecaster, _ = load_forecaster(load_bundle(golden_bundle), "litert")
    return forecaster


def test_the_held_out_period_is_made_again_with_the_manifest_s_figures(
    golden_forecaster: Forecaster,
) -> None:
    held = held_out(golden_forecaster, DEFAULT_DATA_DIR)
    manifest = golden_forecaster.bundle.manifest
    test_period = manifest["training"]["test"]  # type: ignore[index]
    assert len(held.last_timestamps) == test_period["samples"]
    assert held.first_hour == int(np.datetime64(test_period["first_target"][:19], "s").astype(int))
    metrics = held.metrics()
    for name, recorded in manifest["metrics"].items():  # type: ignore[union-attr]
        assert metrics[name]["n"] == recorded["n"]
        # The baselines are computed as training computed them; the model on LiteRT within
        # the parity tolerance of the cloud's forecasts.
        rel = 1e-4 if name == "sbn" else 1e-9
        for figure in ("mae", "rmse", "mape"):
            assert metrics[name][figure] == pytest.approx(recorded[figure], rel=rel), (name, figure)


def test_data_without_the_held_out_period_is_refused(
    golden_forecaster: Forecaster, tmp_path: Path
) -> None:
    with pytest.raises(HeldOutError, match="no data for building 'b13'"):
        held_out(golden_forecaster, tmp_path)


def _body(loads: list[float]) -> bytes:
    return json.dumps({"loads": loads, "last_timestamp": "2017-12-20T23:00:00Z"}).encode()


def test_a_request_is_forecast_here_as_the_predictor_forecasts_it(
    golden_forecaster: Forecaster,
) -> None:
    loads = list(golden_forecaster.bundle.reference.loads[0])
    answer = forecast_locally(golden_forecaster, _body(loads))
    last = int(np.datetime64("2017-12-20T23:00:00", "s").astype(np.int64))
    expected = golden_forecaster.forecast(np.asarray(loads), last)
    np.testing.assert_allclose(answer.forecast, expected)
    assert answer.model_id == golden_forecaster.model_id and answer.runtime == "litert"
    assert answer.series is None
    with pytest.raises(RequestForecastError, match="'loads' must hold exactly 600 hourly values"):
        forecast_locally(golden_forecaster, _body(loads[:10]))


def test_a_request_file_must_be_a_json_prediction_request(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"loads": [1, 2')
    with pytest.raises(RequestForecastError, match=r"bad\.json is not valid JSON"):
        read_request(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(RequestForecastError, match="is not a prediction request"):
        read_request(bad)
    with pytest.raises(RequestForecastError, match=r"cannot read .*missing\.json: No such file"):
        read_request(tmp_path / "missing.json")


def test_the_cli_and_the_predictor_never_import_matplotlib() -> None:
    code = (
        "import sys, edgecast.cli, edgecast.predictor.server\n"
        "edgecast.cli.build_parser()\n"
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert result.stdout.strip() == "False"
