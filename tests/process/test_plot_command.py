"""``edgecast plot`` run as a user runs it: a real trained bundle's held-out weeks, a real
predictor's forecast over HTTP, and bad input answered with one line and no PNG."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from edgecast_harness.bundle_faults import read_manifest
from edgecast_harness.ports import free_port
from edgecast_harness.predictor import edgecast


def _png(path: Path) -> np.ndarray:
    assert path.stat().st_size < 150_000
    pixels = matplotlib.image.imread(path)[..., :3]
    assert pixels.shape == (450, 1000, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10, "a blank image"
    return pixels


def _forecast_printed(stdout: str) -> list[float]:
    return json.loads(stdout.split("forecast_kwh ", 1)[1])


def _refused(*args: str, out: Path, code: int) -> str:
    """Runs ``edgecast plot`` expecting exit ``code``: one line on stderr and no PNG."""
    result = edgecast("plot", *args, "--out", str(out), check=False)
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecast plot: "), result.stderr
    assert result.stdout == ""
    folder = out if out.is_dir() else out.parent
    if folder.is_dir():
        assert not out.is_file()
        assert [p.name for p in folder.iterdir() if p.suffix in (".png", ".part")] == []
    return lines[0]


def test_plot_bundle_shows_the_held_out_weeks_with_the_bundle_s_figures(trained_store, tmp_path):
    bundle = trained_store.root / trained_store.model_ids[0]
    out = tmp_path / "bundle.png"
    result = edgecast("plot", "bundle", str(bundle), "--out", str(out))
    metrics = read_manifest(bundle)["metrics"]
    first = read_manifest(bundle)["training"]["test"]["first_target"][:10]
    assert result.stdout.startswith(f"{out}: {bundle.name} on b13, ")
    # The forecasts are made again from the weights on the shipped data: the manifest's figures.
    assert (
        f"held-out MAE model {metrics['sbn']['mae']:.3f}, seasonal naive "
        f"{metrics['seasonal_naive']['mae']:.3f}, linear {metrics['linear']['mae']:.3f} kWh"
    ) in result.stdout
    assert "24 h ahead" in result.stdout
    assert first == "2017-11-06" and "2017-11-07 to 2017-11-20" in result.stdout
    _png(out)

    week = tmp_path / "week.png"
    result = edgecast(
        "plot", "bundle", str(bundle), "--out", str(week), "--step", "1", "--days", "7",
        "--from", "2017-12-01", "--runtime", "litert",
    )  # fmt: skip
    assert "2017-12-01 to 2017-12-07, 1 h ahead" in result.stdout
    assert _png(week).tobytes() != _png(out).tobytes()


def test_plot_request_draws_what_a_running_predictor_answers(
    trained_store, start_predictor, body, tmp_path
):
    model_id = trained_store.model_ids[0]
    predictor = start_predictor(trained_store.root, "--model-id", model_id)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({**body, "series": "b13"}))
    answer = predictor.post("/v1/predict", json=body).json()

    out = tmp_path / "request.png"
    result = edgecast(
        "plot", "request", "--url", predictor.url, "--input", str(request), "--out", str(out)
    )
    assert result.stdout.startswith(f"{out}: {model_id} (keras) forecast_kwh [")
    assert _forecast_printed(result.stdout) == [round(v, 2) for v in answer["forecast_kwh"]]
    _png(out)

    # From the bundle here, through the predictor's own code: the same forecast.
    local = tmp_path / "local.png"
    result = edgecast(
        "plot", "request", "--bundle", str(trained_store.root / model_id),
        "--input", str(request), "--out", str(local), "--hours", "48",
    )  # fmt: skip
    assert _forecast_printed(result.stdout) == [round(v, 2) for v in answer["forecast_kwh"]]
    _png(local)


def test_plot_bundle_refuses_bad_input_with_one_line(trained_store, tmp_path):
    bundle = trained_store.root / trained_store.model_ids[0]
    out = tmp_path / "out.png"
    assert "no bundle at" in _refused("bundle", str(tmp_path / "missing"), out=out, code=2)
    damaged = Path(shutil.copytree(bundle, tmp_path / "damaged" / bundle.name))
    with (damaged / "weights.npz").open("r+b") as weights:
        weights.seek(200)
        byte = weights.read(1)
        weights.seek(200)
        weights.write(bytes([byte[0] ^ 0xFF]))
    line = _refused("bundle", str(damaged), out=out, code=1)
    assert "REFUSED" in line and "weights.npz" in line
    litert = ("bundle", str(bundle), "--runtime", "litert")  # ready in a second
    line = _refused(*litert, "--data-dir", str(tmp_path), out=out, code=2)
    assert "no data for building 'b13'" in line
    line = _refused(*litert, "--from", "2016-03-01", out=out, code=2)
    assert "outside the held-out period, 2017-11-06 to 2017-12-31" in line
    line = _refused(*litert, "--step", "25", out=out, code=2)
    assert "--step must be between 1 and the horizon, 24" in line
    line = _refused("bundle", str(bundle), out=tmp_path / "no" / "such" / "out.png", code=2)
    assert "does not exist" in line
    (tmp_path / "a-folder.png").mkdir()
    assert "is a directory" in _refused(
        "bundle", str(bundle), out=tmp_path / "a-folder.png", code=2
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"loads": [1, 2', "is not valid JSON"),
        ("[1, 2, 3]", "is not a prediction request"),
    ],
)
def test_plot_request_refuses_a_file_that_is_not_a_request(content, message, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(content)
    url = f"http://127.0.0.1:{free_port()}"
    line = _refused(
        "request", "--url", url, "--input", str(request), out=tmp_path / "r.png", code=2
    )
    assert message in line


def test_plot_request_says_when_no_forecast_comes_back(
    trained_store, start_predictor, body, tmp_path
):
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body))
    out = tmp_path / "r.png"
    nobody = f"http://127.0.0.1:{free_port()}"
    line = _refused("request", "--url", nobody, "--input", str(request), out=out, code=1)
    assert f"cannot reach a predictor at {nobody}" in line and "Connection refused" in line

    predictor = start_predictor(trained_store.root, "--model-id", trained_store.model_ids[0])
    request.write_text(json.dumps({**body, "loads": body["loads"][:100]}))
    line = _refused("request", "--url", predictor.url, "--input", str(request), out=out, code=1)
    assert "answered 400: 'loads' must hold exactly 600 hourly values, got 100" in line
    # The same request, forecast here, is refused with the predictor's own words.
    bundle = trained_store.root / trained_store.model_ids[0]
    line = _refused("request", "--bundle", str(bundle), "--input", str(request), out=out, code=2)
    assert "refused: 'loads' must hold exactly 600 hourly values, got 100" in line
