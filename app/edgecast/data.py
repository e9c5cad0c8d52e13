"""Load hourly building electricity (and optional outdoor temperature) as a clean UTC series.

The archive replaces missing or invalid meter readings by 0, so a zero (or negative) hour is
treated as missing, never as a real zero. Gaps in the timestamps become missing hours too, so
the returned frame always has one row per hour.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# The shipped sample beside the package in a checkout; EDGECAST_DATA_DIR points elsewhere.
DEFAULT_DATA_DIR = Path(
    os.environ.get(
        "EDGECAST_DATA_DIR", Path(__file__).resolve().parents[2] / "data" / "cambridge-estates"
    )
)
DEFAULT_WEATHER_STATION = "bedford"
# The archive's CSV columns: the hour (every file) and the electricity load (edgecast ingest
# writes the same).
TIME_COLUMN = "datetime"
LOAD_COLUMN = "equipment load [kWh]"


class DataError(ValueError):
    """The data set cannot be read as an hourly series."""


def _pandas() -> ModuleType:
    """pandas, imported on first use: the predictor's path never loads it (nor its image)."""
    try:
        import pandas
    except ImportError:
        raise DataError(
            "reading the data archive needs pandas: install edgecast with its data extra "
            "(pip install 'edgecast[data]')"
        ) from None
    return pandas


@dataclass(frozen=True)
class SeriesSummary:
    """What a bundle records about the data it was trained on."""

    building: str
    start: str
    end: str
    hours: int
    missing_load_hours: int
    with_temperature: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _read_hourly_csv(
    paths: list[Path], value_columns: dict[str, str], until: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Read CSV files into one frame indexed by hour (UTC); unparsable cells become NaN.

    Rows at or after ``until`` are dropped before any value in them is looked at, so nothing
    after that time can shape what is computed from the frame.
    """
    pd = _pandas()

    frames = []
    for path in paths:
        raw = pd.read_csv(path, dtype=str)
        if TIME_COLUMN not in raw.columns:
            raise DataError(f"{path}: no 'datetime' column (columns: {list(raw.columns)})")
        missing = [c for c in value_columns if c not in raw.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}")
        stamps = pd.to_datetime(raw[TIME_COLUMN], errors="coerce", utc=True)
        if until is not None:
            before = (stamps < until).to_numpy()
            raw, stamps = raw[before], stamps[before]
        values = {
            name: pd.to_numeric(raw[col], errors="coerce") for col, name in value_columns.items()
        }
        frame = pd.DataFrame(values)
        frame.index = pd.DatetimeIndex(stamps, name="time")
        frames.append(frame)
    if not frames:
        raise DataError("no CSV files found")
    data = pd.concat(frames)
    data = data[data.index.notna()]
    # Readings that are not on the hour do not belong to an hourly series.
    data = data[(data.index.minute == 0) & (data.index.second == 0)]
    data = data[~data.index.duplicated(keep="first")].sort_index()
    if data.empty:
        raise DataError("no hourly rows with a valid timestamp")
    full = pd.date_range(data.index[0], data.index[-1], freq="h", tz="UTC", name="time")
    return data.reindex(full)


def load_building(
    building: str,
    data_dir: Path = DEFAULT_DATA_DIR,
    weather_station: str | None = DEFAULT_WEATHER_STATION,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Hourly frame with column ``load`` (kWh, NaN where missing) and optionally ``temperature``,
    of the hours before ``until`` when it is given."""

    building_dir = Path(data_dir) / "electricity" / building
    paths = sorted(building_dir.glob("*.csv"))
    if not paths:
        known = sorted(p.name for p in (Path(data_dir) / "electricity").glob("*"))
        raise DataError(f"no data for building {building!r} in {building_dir} (known: {known})")
    frame = _read_hourly_csv(paths, {LOAD_COLUMN: "load"}, until)
    frame.loc[~(frame["load"] > 0), "load"] = np.nan
    if weather_station:
        weather_paths = sorted((Path(data_dir) / "weather" / weather_station).glob("*.csv"))
        if not weather_paths:
            raise DataError(f"no weather data for station {weather_station!r} in {data_dir}")
        weather = _read_hourly_csv(weather_paths, {"air_temperature [degC]": "temperature"}, until)
        frame = frame.join(weather, how="left")
    return frame


def summarize(building: str, frame: pd.DataFrame) -> SeriesSummary:

    return SeriesSummary(
        building=building,
        start=frame.index[0].isoformat(),
        end=frame.index[-1].isoformat(),
        hours=len(frame),
        missing_load_hours=int(frame["load"].isna().sum()),
        with_temperature="temperature" in frame.columns,
    )


def list_buildings(data_dir: Path = DEFAULT_DATA_DIR) -> list[str]:
    return sorted(p.name for p in (Path(data_dir) / "electricity").iterdir() if p.is_dir())
