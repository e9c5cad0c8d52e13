"""Champion and challenger in the cloud store: which model serves, and who may replace it.

The champion of each building is recorded in ``<store>/champions.json``, a plain file (never a
link) written whole to a temporary file in the store, flushed to disk and renamed over the old
one, under the lock file ``.champions.lock``, so it always names one bundle per building::

    {"format_version": 1, "champions": {"b13": {"model_id": "sbn-b13-...", "since": "...",
                                                "by": "retrain"}}}

``edgecast promote`` sets it (the first champion of a store that ``edgecast train`` filled);
``edgecast retrain`` sets it when its candidate wins. A candidate's manifest records the
decision in an optional ``promotion`` section; bundles made before it have none and stay valid.
A refused candidate is kept in ``<store>/refused/`` for inspection, and ``check_not_refused``
(run by rollout-model.yml's verification) keeps it from ever reaching a node.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edgecast.store_rules import is_model_id, shown

CHAMPIONS_FILE = "champions.json"
LOCK_FILE = ".champions.lock"
REFUSED_FOLDER = "refused"
PROMOTED = "promoted"
REFUSED = "refused"
DEFAULT_MARGIN = 0.02
FORMAT_VERSION = 1


class PromotionError(ValueError):
    """A bundle the champion/challenger rule refused, or a champion record that is unreadable."""


def check_not_refused(manifest: dict[str, object]) -> None:
    """Raises PromotionError for a bundle whose manifest says champion/challenger refused it."""
    section = manifest.get("promotion")
    if section is None:
        return
    decision = section.get("decision") if isinstance(section, dict) else None
    if decision not in (PROMOTED, REFUSED):
        raise PromotionError(
            f"the manifest's promotion section {shown(section)} records no decision "
            f"({PROMOTED!r} or {REFUSED!r}); it is not one edgecast retrain writes"
        )
    if decision == REFUSED:
        assert isinstance(section, dict)
        raise PromotionError(
            f"{shown(manifest.get('model_id'))} lost to the champion "
            f"{shown(section.get('champion_id'))} ({shown(section.get('reason'), 240)}); a "
            "refused candidate stays in the cloud store for inspection and is never rolled out: "
            "roll out the champion, or retrain"
        )


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str


def decide(
    candidate_mae: float, champion_mae: float | None, margin: float, floor_problem: str | None
) -> Decision:
    """The rule: the bundle checks and the naive floor first, then a margin over the champion."""
    if floor_problem is not None:
        return Decision(False, f"below the naive floor: {floor_problem}")
    if champion_mae is None:
        return Decision(
            True,
            f"first champion: no champion to beat; MAE {candidate_mae:.3f} kWh, passes the "
            "bundle checks and the naive floor",
        )
    bar = champion_mae * (1 - margin)
    change = candidate_mae / champion_mae - 1
    figures = (
        f"MAE {candidate_mae:.3f} kWh vs the champion's {champion_mae:.3f} ({change:+.1%}); "
        f"the margin asks for at most {bar:.3f} ({margin:.0%} lower)"
    )
    if candidate_mae <= bar:
        return Decision(True, f"beats the champion: {figures}")
    return Decision(False, f"does not beat the champion by the margin: {figures}")


def _records(store: Path) -> dict[str, dict[str, str]]:
    path = Path(store) / CHAMPIONS_FILE
    if path.is_symlink():
        raise PromotionError(f"{path} is a symbolic link; it must be a plain file")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PromotionError(f"{path} cannot be read as JSON: {exc}") from None
    champions = data.get("champions") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("format_version") != FORMAT_VERSION
        or not isinstance(champions, dict)
        or not all(
            isinstance(r, dict) and is_model_id(r.get("model_id")) for r in champions.values()
        )
    ):
        raise PromotionError(
            f"{path} is not a champion record (format_version {FORMAT_VERSION}, champions: "
            "building -> {model_id, since, by}); fix it or remove it and promote again"
        )
    return champions


def champion_of(store: Path, building: str) -> str | None:
    """The model_id of the building's champion, or None when the store records none."""
    record = _records(store).get(building)
    return None if record is None else str(record["model_id"])


def set_champion(store: Path, building: str, model_id: str, by: str) -> str | None:
    """Records ``model_id`` as the building's champion; returns the one it replaces."""
    store = Path(store)
    with open(store / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        champions = _records(store)
        before = champions.get(building, {}).get("model_id")
        champions[building] = {
            "model_id": model_id,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": by,
        }
        content = json.dumps(
            {"format_version": FORMAT_VERSION, "champions": champions}, indent=2, sort_keys=True
        )
        temp = store / f".{CHAMPIONS_FILE}.{os.getpid()}.tmp"
        try:
            with open(temp, "w") as handle:
                handle.write(content + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, store / CHAMPIONS_FILE)
        finally:
            temp.unlink(missing_ok=True)
        descriptor = os.open(store, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return before
