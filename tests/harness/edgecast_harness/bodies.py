"""Valid prediction requests made of real data from the shipped sample."""

from __future__ import annotations

from .paths import DATA


def window_from_data(
    building: str = "b13", end: str = "2017-12-20 23:00", window: int = 600
) -> dict:
    """A valid request body: ``window`` real hourly loads ending at ``end`` (UTC)."""
    from edgecast.data import load_building

    frame = load_building(building, DATA, weather_station=None)
    loads = frame["load"].loc[:end].iloc[-window:]
    return {
        "loads": [float(v) for v in loads],
        "last_timestamp": loads.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
