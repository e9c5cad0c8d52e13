"""Judge a canary on live traffic: the new model against the one it replaced, on the same hours.

A canary node serves the new model and scores the previous one in shadow on the same requests
(``edgecast serve --shadow``), so its status row (``edgecast.status``) carries both models' live
MAE over exactly the same hours. The new model passes when it serves and is ready, that
comparison covers enough hours, its MAE there is at most the old one's times ``1 + tolerance``,
no request failed with a 5xx over the analysis window (the row's interval), and its p99 is
within the bound. Anything that cannot be judged fails: no shadow, too few hours, a predictor
that did not answer at the end of the window or restarted during it (its counters started
again, so what it answered before is unknown), a canary that left the run. A model reaches the
rest of the fleet only on evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CanaryRules:
    min_hours: int = 24  # common hours both models scored
    mae_tolerance: float = 0.0  # the new MAE may be this fraction above the old one's
    p99_ms: float = 1000.0

    def __post_init__(self) -> None:
        if self.min_hours < 1 or self.mae_tolerance < 0 or self.p99_ms <= 0:
            raise ValueError("min_hours >= 1, mae_tolerance >= 0 and p99_ms > 0 are needed")


@dataclass(frozen=True)
class Verdict:
    node: str
    passed: bool
    reason: str
    new_mae: float | None = None
    old_mae: float | None = None
    hours: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(row: Mapping[str, Any], candidate: str, previous: str, rules: CanaryRules) -> Verdict:
    """The verdict on one canary's status row, ``candidate`` having replaced ``previous``."""
    node = str(row.get("node"))

    def fail(reason: str, **figures: Any) -> Verdict:
        return Verdict(node, False, reason, **figures)

    if row.get("error"):
        return fail(f"its predictor could not be read: {row['error']}")
    if "requests" in row and row["requests"] is None:
        return fail(
            "its predictor restarted during the analysis window (its request counters started "
            f"again, it serves {row.get('model_id')}): what it answered before cannot be judged"
        )
    if row.get("model_id") != candidate or not row.get("ready"):
        return fail(f"it serves {row.get('model_id')} (ready: {row.get('ready')}), not {candidate}")
    errors = row.get("errors_5xx")
    if errors:
        return fail(
            f"{errors} requests failed with a 5xx in the analysis window (of "
            f"{row.get('requests')} prediction requests)",
        )
    if row.get("shadow_model_id") != previous:
        return fail(
            f"it scores {row.get('shadow_model_id')} in shadow, not {previous}: the predictor "
            "needs shadow scoring on (edgecast serve --shadow) to be judged"
        )
    hours, new, old = (
        row.get("shadow_hours") or 0,
        row.get("same_hours_mae"),
        row.get("shadow_same_hours_mae"),
    )
    figures = {"new_mae": new, "old_mae": old, "hours": hours}
    if hours < rules.min_hours or new is None or old is None:
        return fail(
            f"only {hours} hours scored by both models (at least {rules.min_hours} needed): not "
            "enough live traffic in the analysis window",
            **figures,
        )
    p99 = row.get("p99_ms")
    if p99 is not None and p99 > rules.p99_ms:
        return fail(f"p99 {p99:.1f} ms is above {rules.p99_ms:g} ms", **figures)
    bound = old * (1 + rules.mae_tolerance)
    if new > bound:
        return fail(
            f"live MAE {new:.3f} kWh is worse than the previous model's {old:.3f} kWh on the same "
            f"{hours} hours (tolerance {rules.mae_tolerance:.0%})",
            **figures,
        )
    return Verdict(
        node,
        True,
        f"live MAE {new:.3f} kWh against the previous model's {old:.3f} kWh on the same {hours} "
        "hours, no 5xx",
        **figures,
    )


def judge_canaries(
    canaries: Iterable[str],
    rows: Mapping[str, Mapping[str, Any]],
    candidate: str,
    previous: str,
    rules: CanaryRules,
) -> list[Verdict]:
    """A verdict for every canary (by inventory name) from its status row in ``rows``: one
    without a row (unreachable, or a task failed on it earlier in the run) fails, as a canary
    is judged only on what it answered."""
    return [
        judge({**rows[name], "node": name}, candidate, previous, rules)
        if name in rows
        else Verdict(
            name,
            False,
            "it left the run before it could be judged (unreachable, or a task failed on it)",
        )
        for name in canaries
    ]
