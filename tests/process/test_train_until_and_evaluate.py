"""``edgecast train --until`` reads nothing after its date; ``edgecast evaluate`` forecasts what
the predictor serves over HTTP for the same windows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from edgecast.data import load_building
from edgecast_harness.bundle_faults import read_manifest
from edgecast_harness.bundles import TrainedStore
from edgecast_harness.paths import DATA
from edgecast_harness.predictor import edgecast

UNTIL = "2017-07-01"


def _data_copy(parent: Path, name: str, rewrite: object) -> Path:
    """b13 and the weather of the shipped sample, each CSV row at or after UNTIL rewritten."""
    root = parent / name
    for sub in ("electricity/b13", "weather/bedford"):
        for source in sorted((DATA / sub).glob("*.csv")):
            target = root / sub / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            frame = pd.read_csv(source, dtype=str)
            late = pd.to_datetime(frame["datetime"], utc=True) >= pd.Timestamp(UNTIL, tz="UTC")
            rewritten = rewrite(frame, late)  # type: ignore[operator]
            rewritten.to_csv(target, index=False)
    return root


def _poisoned(frame: pd.DataFrame, late: pd.Series) -> pd.DataFrame:
    """After UNTIL: loads a thousand times larger, unparsable cells, and rows duplicated."""
    frame = frame.copy()
    column = frame.columns[1]
    values = pd.to_numeric(frame.loc[late, column], errors="coerce") * 1000
    frame.loc[late, column] = values.astype(str).where(values.index % 7 != 0, "poison")
    return pd.concat([frame, frame[late]])


def _truncated(frame: pd.DataFrame, late: pd.Series) -> pd.DataFrame:
    return frame[~late]


def _train(data_dir: Path, out: Path) -> Path:
    result = edgecast(
        "train",
        "--building",
        "b13",
        "--data-dir",
        str(data_dir),
        "--until",
        UNTIL,
        "--epochs",
        "2",
        "--no-litert",
        "--temperature",
        "--out",
        str(out),
    )
    (bundle,) = out.iterdir()
    assert "held-out accuracy for b13" in result.stdout
    return bundle


def test_train_until_never_reads_the_data_after_its_date(tmp_path: Path) -> None:
    poisoned = _train(_data_copy(tmp_path, "poisoned", _poisoned), tmp_path / "from-poisoned")
    clean = _train(_data_copy(tmp_path, "clean", _truncated), tmp_path / "from-clean")
    # Everything the model was fitted, checked and judged on is the same as if the files ended
    # at UNTIL: the scaling, the held-out samples and every metric, the weights themselves.
    for name in ("scaling.json", "reference.npz", "architecture.json", "weights.npz"):
        assert (poisoned / name).read_bytes() == (clean / name).read_bytes(), name
    manifest, twin = read_manifest(poisoned), read_manifest(clean)
    assert manifest["metrics"] == twin["metrics"]
    assert manifest["training"]["data"] == twin["training"]["data"]
    until = datetime.fromisoformat(UNTIL).replace(tzinfo=UTC)
    assert manifest["training"]["until"] == until.isoformat()
    assert datetime.fromisoformat(manifest["training"]["data"]["end"]) < until
    assert datetime.fromisoformat(manifest["training"]["test"]["last_target"]) <= until
    assert manifest["floor"]["ratio_to_seasonal_naive"] == (
        manifest["metrics"]["sbn"]["mae"] / manifest["metrics"]["seasonal_naive"]["mae"]
    )


def test_train_refuses_a_date_that_is_not_one_or_leaves_too_little_data(tmp_path: Path) -> None:
    result = edgecast("train", "--until", "next tuesday", "--out", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "'next tuesday' is not a date" in result.stderr
    early = edgecast(
        "train", "--building", "b13", "--until", "2016-01-10", "--out", str(tmp_path), check=False
    )
    assert early.returncode == 2
    assert "series of 216 hours is shorter than window + horizon" in early.stderr
    assert not any(tmp_path.iterdir())


def test_evaluate_forecasts_what_the_predictor_serves_over_http(
    trained_store: TrainedStore, start_predictor, tmp_path: Path
) -> None:
    model_id = trained_store.model_ids[0]
    forecasts = tmp_path / "forecasts.json"
    result = edgecast(
        "evaluate",
        str(trained_store.root / model_id),
        "--from",
        "2017-11-01",
        "--to",
        "2017-11-11",
        "--json",
        "--forecasts",
        str(forecasts),
    )
    report = json.loads(result.stdout)
    (row,) = report["buildings"]
    assert row["building"] == "b13" and row["model_id"] == model_id and row["days"] == 10
    assert set(row["metrics"]) == {"sbn", "seasonal_naive", "linear"}
    assert row["ratio_to_seasonal_naive"] == (
        row["metrics"]["sbn"]["mae"] / row["metrics"]["seasonal_naive"]["mae"]
    )
    days = json.loads(forecasts.read_text())["b13"]

    loads = load_building("b13", DATA, weather_station=None)["load"]
    predictor = start_predictor(trained_store.root, "--model-id", model_id)
    for last, expected in zip(days["last_timestamps"], days["forecast_kwh"], strict=True):
        window = loads.loc[: pd.Timestamp(last, unit="s", tz="UTC")].iloc[-600:]
        assert window.notna().all()
        answer = predictor.post(
            "/v1/predict",
            json={
                "loads": window.tolist(),
                "last_timestamp": window.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        ).json()
        assert answer["model_id"] == model_id
        np.testing.assert_allclose(answer["forecast_kwh"], expected, rtol=0, atol=1e-9)


def test_evaluate_says_what_is_wrong_with_its_arguments(trained_store: TrainedStore) -> None:
    bundle = str(trained_store.root / trained_store.model_ids[0])
    store = str(trained_store.root)
    cases = [
        ([bundle, "--from", "2017-12-01", "--to", "2017-11-01"], "--from must come before --to"),
        ([store, "--from", "2017-11-01", "--to", "2017-12-01"], "name the buildings to evaluate"),
        (
            [store, "--buildings", "all", "--from", "2017-11-01", "--to", "2017-12-01"],
            "holds no bundle trained on b4, b97",
        ),
        (
            [bundle, "--runtime", "litert", "--from", "2030-01-01", "--to", "2030-02-01"],
            "no day from 2030-01-01 to 2030-02-01",
        ),
    ]
    for arguments, message in cases:
        refused = edgecast("evaluate", *arguments, check=False)
        assert refused.returncode == 2 and message in refused.stderr, (arguments, refused.stderr)
