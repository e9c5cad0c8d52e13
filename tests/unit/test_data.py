"""Loading the hourly series: gaps and zero readings are missing, never real zeros."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgecast.data import DataError, list_buildings, load_building
from edgecast.windows import fill_short_gaps, make_samples, split_by_time
from edgecast_harness.paths import DATA


def write_building(root: Path, rows: list[str], weather: list[str] | None = None) -> Path:
    (root / "electricity" / "bx").mkdir(parents=True)
    (root / "electricity" / "bx" / "2020.csv").write_text(
        "datetime,equipment load [kWh]\n" + "\n".join(rows) + "\n"
    )
    if weather is not None:
        (root / "weather" / "st").mkdir(parents=True)
        (root / "weather" / "st" / "2020.csv").write_text(
            "datetime,air_temperature [degC],rltv_hum [%],glbl_irad_amt [W/m2]\n"
            + "\n".join(weather)
            + "\n"
        )
    return root


def test_shipped_buildings_are_complete_hourly_utc_series():
    assert list_buildings(DATA) == ["b13", "b4", "b97"]
    for building in list_buildings(DATA):
        frame = load_building(building, DATA)
        assert str(frame.index.tz) == "UTC"
        assert len(frame) == 2 * 8760 + 24  # 2016 is a leap year
        assert (np.diff(frame.index.as_unit("s").asi8) == 3600).all()
        assert frame["load"].notna().all() and (frame["load"] > 0).all()
        assert frame["temperature"].between(-20, 40).all()


def test_gaps_zeros_duplicates_and_bad_rows_become_missing_hours(tmp_path):
    rows = [
        "2020-01-01 00:00:00,5.0",
        "2020-01-01 01:00:00,0",  # the archive's stand-in for a missing reading
        "2020-01-01 02:00:00,6.0",
        "2020-01-01 02:00:00,99.0",  # duplicate: the first one counts
        "2020-01-01 02:30:00,7.0",  # not on the hour: not part of an hourly series
        "not a date,8.0",
        "2020-01-01 05:00:00,abc",  # unparsable value
        "2020-01-01 06:00:00,-3",  # negative energy is invalid
        "2020-01-01 07:00:00,4.0",
    ]
    weather = ["2020-01-01 00:00:00,1.5,80,0", "2020-01-01 07:00:00,2.5,80,0"]
    frame = load_building("bx", write_building(tmp_path, rows, weather), weather_station="st")
    expected_index = pd.date_range("2020-01-01", periods=8, freq="h", tz="UTC")
    assert list(frame.index) == list(expected_index)
    loads = frame["load"].tolist()
    assert loads[0] == 5.0 and loads[2] == 6.0 and loads[7] == 4.0
    assert all(np.isnan(loads[i]) for i in (1, 3, 4, 5, 6))
    assert frame["temperature"].iloc[0] == 1.5 and frame["temperature"].iloc[7] == 2.5
    assert frame["temperature"].iloc[1:7].isna().all()


def test_unknown_building_names_the_known_ones(tmp_path):
    with pytest.raises(DataError, match=r"no data for building 'nope'.*b13"):
        load_building("nope", DATA)


def test_missing_column_is_a_clear_error(tmp_path):
    (tmp_path / "electricity" / "bx").mkdir(parents=True)
    (tmp_path / "electricity" / "bx" / "2020.csv").write_text("datetime,load\n2020-01-01,1\n")
    with pytest.raises(DataError, match="missing column"):
        load_building("bx", tmp_path, weather_station=None)


def test_only_short_gaps_are_interpolated():
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, np.nan, 8.0, np.nan])
    filled = fill_short_gaps(values, max_gap=3)
    assert filled[1] == 2.0
    assert np.isnan(filled[3:7]).all()  # a 4-hour gap stays missing
    assert np.isnan(filled[8])  # nothing after the last observation is invented


def test_samples_skip_missing_targets_and_split_by_time():
    index = pd.date_range("2020-01-01", periods=24 * 60, freq="h", tz="UTC")
    loads = 10 + np.sin(np.arange(len(index)) * 2 * np.pi / 24)
    missing = 24 * 58 + 5
    loads[missing] = np.nan
    frame = pd.DataFrame({"load": loads}, index=index)
    samples = make_samples(frame, window=24 * 22, horizon=24, max_gap=0)
    assert np.isfinite(samples.targets).all() and np.isfinite(samples.loads).all()
    # Every sample whose inputs or targets hold the missing hour is gone, and only those.
    all_last = np.arange(24 * 22 - 1, len(index) - 24)
    touches = (all_last >= missing - 24) & (all_last - 24 * 22 < missing)
    assert len(samples) == (~touches).sum()
    end = int(index[-1].timestamp()) + 3600
    test_start, val_start = end - 15 * 86400, end - 20 * 86400
    train, val, test = split_by_time(samples, val_start, test_start)
    assert (train.last_timestamps + 24 * 3600 < val_start).all()
    assert (val.last_timestamps + 3600 >= val_start).all()
    assert (test.last_timestamps + 3600 >= test_start).all()
    assert len(train) and len(val) and len(test)
