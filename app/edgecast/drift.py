"""Drift: the fleet forecasts a building worse live than its model did on held-out data.

Each edge node's status row (``edgecast.status``) carries the serving model's live MAE over the
last 7 days of requests and the held-out MAE its bundle was validated with. A node has drifted
when it scored at least ``min_hours`` hours and its live MAE is above ``factor`` times the
validation MAE (the building changed: occupancy, season, equipment). The 7-day window is the
time the drift must last; ``min_hours`` keeps a few bad hours from firing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_FACTOR = 1.3
DEFAULT_MIN_HOURS = 24


@dataclass(frozen=True)
class DriftReport:
    drifted: bool
    lines: list[str]


def check(
    rows: Iterable[Mapping[str, Any]],
    factor: float = DEFAULT_FACTOR,
    min_hours: int = DEFAULT_MIN_HOURS,
) -> DriftReport:
    """Whether any node drifted, and a line per node saying why or why not."""
    if factor <= 0 or min_hours < 1:
        raise ValueError("factor > 0 and min_hours >= 1 are needed")
    drifted = False
    lines = []
    for row in rows:
        node, live, valid = row.get("node"), row.get("live_mae_7d"), row.get("validation_mae")
        hours = row.get("live_hours_7d") or 0
        if row.get("error"):
            lines.append(f"{node}: not judged, its predictor could not be read")
        elif live is None or valid is None or hours < min_hours:
            lines.append(
                f"{node}: not judged, {hours} live hours scored (at least {min_hours} needed)"
            )
        elif live > factor * valid:
            drifted = True
            lines.append(
                f"{node}: drifted, live MAE {live:.3f} kWh over {hours} hours is "
                f"{live / valid:.2f}x the held-out {valid:.3f} (more than {factor:g}x)"
            )
        else:
            lines.append(
                f"{node}: no drift, live MAE {live:.3f} kWh over {hours} hours is "
                f"{live / valid:.2f}x the held-out {valid:.3f} (at most {factor:g}x)"
            )
    return DriftReport(drifted, lines)
