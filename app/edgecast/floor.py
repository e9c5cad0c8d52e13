"""The naive floor: a model worse than seasonal naive on its held-out time does not ship.

A forecast is only worth sending to a device if it beats what the device could compute alone
(the same hour last week). ``edgecast train`` records the held-out MAE ratio in the manifest's
``floor``; bundles made before that field existed still carry the held-out metrics it is
computed from.
"""

from __future__ import annotations

import math

from edgecast.store_rules import shown


class FloorError(ValueError):
    """The bundle is below the naive floor, or does not say how it compares."""


def ratio_to_naive(manifest: dict[str, object]) -> float:
    """The model's held-out MAE over seasonal naive's, as the manifest records it."""
    floor = manifest.get("floor")
    ratio: object = floor.get("ratio_to_seasonal_naive") if isinstance(floor, dict) else None
    if ratio is None:
        metrics = manifest.get("metrics")
        try:
            ratio = metrics["sbn"]["mae"] / metrics["seasonal_naive"]["mae"]  # type: ignore[index]
        except (KeyError, TypeError, ZeroDivisionError):
            ratio = None
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio):
        raise FloorError(
            f"the manifest records no finite ratio to seasonal naive (floor: {shown(floor)}); "
            "train the model again, or ship it anyway with rollout_allow_worse_than_naive=true"
        )
    return float(ratio)


def check_floor(manifest: dict[str, object], enforce: bool) -> str | None:
    """Raises FloorError for a model worse than naive when enforced; otherwise the warning."""
    try:
        ratio = ratio_to_naive(manifest)
    except FloorError as exc:
        if enforce:
            raise
        return f"the naive floor is off and cannot be checked: {exc}"
    if ratio <= 1.0:
        return None
    what = (
        f"{shown(manifest.get('model_id'))} is worse than seasonal naive on its held-out time "
        f"(MAE {ratio:.3f}x naive's)"
    )
    if enforce:
        raise FloorError(
            f"{what}: the edge would forecast better by repeating last week; train a better model, "
            "or ship this one anyway with rollout_allow_worse_than_naive=true"
        )
    return f"{what}; shipped because the naive floor is off (rollout_allow_worse_than_naive)"
