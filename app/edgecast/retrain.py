"""``edgecast retrain``: train a candidate on the data up to now and let it replace the champion
only when it forecasts better on time neither of them trained on.

The held-out period is the last ``holdout_days`` whole days of the building's data. The
candidate trains (``edgecast.training.train``, with its own validation and naive floor) on the
data before that period, starting from the champion's weights when the architecture is the
same (warm) and from a random draw otherwise (cold); the champion must have finished training
before the period starts. Both are then scored on the period by ``edgecast.evaluation`` through
the verified bundle path, a forecast every midnight as the predictor serves it. The candidate
is built in a dot-named staging folder of the store, gets its ``promotion`` section (signed
again when a key is given), and is then renamed into the store (promoted) or into
``<store>/refused/`` (refused); a promotion then rewrites the champion record.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from edgecast.architecture import SBNConfig
from edgecast.bundle import Bundle, load_bundle
from edgecast.bundle.json_files import json_bytes
from edgecast.data import DEFAULT_DATA_DIR, DataError, load_building
from edgecast.evaluation import EvaluationError, evaluate_building
from edgecast.floor import FloorError, check_floor
from edgecast.forecaster import load_forecaster
from edgecast.promotion import (
    DEFAULT_MARGIN,
    PROMOTED,
    REFUSED,
    REFUSED_FOLDER,
    champion_of,
    decide,
    set_champion,
)
from edgecast.store_rules import MANIFEST, list_bundles


class RetrainError(ValueError):
    """Retraining cannot start or cannot be judged: bad input, said in one line."""


@dataclass(frozen=True)
class RetrainOptions:
    building: str
    store: Path
    data_dir: Path = DEFAULT_DATA_DIR
    holdout_days: int = 14
    margin: float = DEFAULT_MARGIN
    epochs: int = 40
    seed: int = 0
    cold: bool = False
    overrides: dict[str, object] | None = None  # architecture fields that differ from the champion
    litert: bool = True
    runtime: str = "keras"
    signing_key_path: Path | None = None
    public_key_path: Path | None = None


@dataclass(frozen=True)
class RetrainResult:
    promoted: bool
    bundle_path: Path
    section: dict[str, object]
    line: str


def _day(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d}"


def holdout_period(building: str, data_dir: Path, days: int) -> tuple[datetime, datetime]:
    """The last ``days`` whole days (UTC midnights) that end at or before the last reading."""
    if days < 1:
        raise RetrainError(f"--holdout-days must be at least 1, not {days}")
    try:
        loads = load_building(building, data_dir, weather_station=None)["load"]
    except DataError as exc:
        raise RetrainError(str(exc)) from None
    last = loads.last_valid_index()
    if last is None:
        raise RetrainError(f"{building}: the data folder holds no valid reading")
    end = (pd.Timestamp(last) + pd.Timedelta(hours=1)).floor("D").to_pydatetime()
    return end - timedelta(days=days), end


def _bundles_of(store: Path, building: str) -> list[str]:
    found = []
    for _, model_id in list_bundles(str(store)):
        try:
            manifest = json.loads((store / model_id / MANIFEST).read_text())
            if manifest["training"]["data"]["building"] == building:
                found.append(model_id)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _load_champion(options: RetrainOptions, signer: object) -> Bundle | None:
    """The champion, verified: with ``--public-key`` when given, else with the signer's key when
    the champion is signed (an unsigned champion of a store that starts signing is read as is)."""
    from edgecast.bundle import BundleError
    from edgecast.signing import load_public_key

    champion_id = champion_of(options.store, options.building)
    if champion_id is None:
        others = _bundles_of(options.store, options.building)
        if others:
            raise RetrainError(
                f"{options.store} holds bundles of {options.building} (newest {others[-1]}) "
                "but records no champion for it: say which one serves with `edgecast promote "
                f"{others[-1]} --store {options.store}`, then retrain"
            )
        return None
    path = options.store / champion_id
    try:
        signed = "signature" in json.loads((path / MANIFEST).read_text())
        key = (
            load_public_key(options.public_key_path)
            if options.public_key_path is not None
            else (signer if signed else None)
        )
        return load_bundle(path, key)  # type: ignore[arg-type]
    except (OSError, ValueError, BundleError) as exc:
        raise RetrainError(
            f"the champion {champion_id} in {options.store} cannot be used: {exc}"
        ) from None


def _champion_end(champion: Bundle) -> datetime:
    """The first hour after the data the champion trained on."""
    try:
        end = champion.manifest["training"]["data"]["end"]  # type: ignore[index]
        return datetime.fromisoformat(str(end)).astimezone(UTC) + timedelta(hours=1)
    except (KeyError, TypeError, ValueError):
        raise RetrainError(
            f"the champion {champion.model_id} does not record where its training data ended"
        ) from None


def _candidate_config(champion: Bundle | None, overrides: dict[str, object]) -> SBNConfig:
    base = champion.config.to_dict() if champion is not None else SBNConfig().to_dict()
    return SBNConfig.from_dict(base | overrides)


def _write_section(path: Path, section: dict[str, object], signing_key_path: Path | None) -> None:
    """Adds the promotion section to the manifest, signed again when a key is given."""
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["promotion"] = section
    if signing_key_path is not None:
        from edgecast.signing import load_private_key, sign_manifest

        manifest["signature"] = sign_manifest(manifest, load_private_key(signing_key_path))
    staged = path / f".{MANIFEST}.tmp"
    staged.write_bytes(json_bytes(manifest))
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    staged.replace(path / MANIFEST)


def retrain(options: RetrainOptions, log: Callable[[str], object] = print) -> RetrainResult:
    from edgecast.signing import load_private_key
    from edgecast.training import TrainOptions, train

    store, building = Path(options.store), options.building
    if not 0 <= options.margin < 1:
        raise RetrainError(f"--margin must be from 0 to under 1 (a fraction), not {options.margin}")
    public_key = None  # the candidate's: signed with --signing-key, or not at all
    if options.signing_key_path is not None:
        public_key = load_private_key(options.signing_key_path).public_key()
    store.mkdir(parents=True, exist_ok=True)
    champion = _load_champion(options, public_key)
    start, end = holdout_period(building, options.data_dir, options.holdout_days)
    if champion is not None:
        trained_until = _champion_end(champion)
        if start < trained_until:
            after = max((end - trained_until) / timedelta(days=1), 0.0)
            raise RetrainError(
                f"{building}: the champion {champion.model_id} trained on data up to "
                f"{trained_until:%Y-%m-%d %H:%M} UTC, and the data after it covers {after:.1f} "
                f"whole days (to {_day(end)}): fewer than the {options.holdout_days}-day held-out "
                "period (--holdout-days) that neither model may have trained on; ingest more "
                "readings or shorten --holdout-days"
            )
    config = _candidate_config(champion, options.overrides or {})
    warm = champion is not None and not options.cold and champion.config == config
    how = f"warm start from {champion.model_id}" if warm else "cold start"  # type: ignore[union-attr]
    log(f"{building}: training a candidate on data before {_day(start)} ({how})")
    loss = champion.manifest.get("training", {}).get("loss", "mae") if champion else "mae"  # type: ignore[union-attr]
    staging = Path(tempfile.mkdtemp(prefix=".retrain-", dir=store))
    try:
        result = train(
            TrainOptions(
                building=building,
                out_dir=staging,
                data_dir=options.data_dir,
                config=config,
                epochs=options.epochs,
                seed=options.seed,
                loss=str(loss),
                litert=options.litert,
                signing_key_path=options.signing_key_path,
                until=start,
                initial_weights=dict(champion.weights) if warm else None,  # type: ignore[union-attr]
            ),
            log=log,
        )
        candidate = load_bundle(result.bundle_path, public_key)
        try:
            check_floor(candidate.manifest, enforce=True)
            floor_problem = None
        except FloorError as exc:
            floor_problem = str(exc)
        try:
            scored = evaluate_building(
                load_forecaster(candidate, options.runtime)[0],
                building,
                options.data_dir,
                start,
                end,
            )
            held = (
                None
                if champion is None
                else evaluate_building(
                    load_forecaster(champion, options.runtime)[0],
                    building,
                    options.data_dir,
                    start,
                    end,
                )
            )
        except EvaluationError as exc:
            raise RetrainError(str(exc)) from None
        candidate_mae = scored.metrics["sbn"]["mae"]
        champion_mae = None if held is None else held.metrics["sbn"]["mae"]
        decision = decide(candidate_mae, champion_mae, options.margin, floor_problem)
        section: dict[str, object] = {
            "decision": PROMOTED if decision.promoted else REFUSED,
            "reason": decision.reason,
            "champion_id": None if champion is None else champion.model_id,
            "candidate_mae": candidate_mae,
            "champion_mae": champion_mae,
            "seasonal_naive_mae": scored.metrics["seasonal_naive"]["mae"],
            "margin": options.margin,
            "period": {"from": start.isoformat(), "to": end.isoformat(), "days": scored.days},
            "start": "warm" if warm else "cold",
            "warm_start_from": champion.model_id if warm else None,  # type: ignore[union-attr]
            "runtime": options.runtime,
            "decided": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_section(result.bundle_path, section, options.signing_key_path)
        load_bundle(result.bundle_path, public_key)  # the digests and signature still hold
        home = store if decision.promoted else store / REFUSED_FOLDER
        home.mkdir(exist_ok=True)
        final = home / result.bundle_path.name
        result.bundle_path.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if decision.promoted:
        set_champion(store, building, final.name, by="retrain")
    verdict = (
        "PROMOTED, now the champion"
        if decision.promoted
        else f"REFUSED, kept for inspection in {final.parent}"
    )
    line = (
        f"{building}: candidate {final.name} ({how}) {verdict}: {decision.reason}; held out "
        f"{_day(start)} to {_day(end)} ({scored.days} days, seasonal naive MAE "
        f"{scored.metrics['seasonal_naive']['mae']:.3f})"
    )
    return RetrainResult(decision.promoted, final, section, line)
