"""``edgecast retrain`` and ``promote``: champion and challenger in the cloud store.

Exit codes: 0 the candidate (or the named bundle) is the champion now; 3 it was refused (by the
margin over the champion, the naive floor or the bundle checks) and the champion is unchanged;
2 bad input (no data, too little data after the champion's training, an unreadable store).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgecast.architecture import NORMALIZATIONS
from edgecast.cli.options import DEFAULT_STORE
from edgecast.data import DEFAULT_DATA_DIR
from edgecast.framework_output import frameworks_held

PROMOTED, REFUSED, BAD_INPUT = 0, 3, 2


def margin(text: str) -> float:
    """A margin on the command line: a fraction (0.02) or a percentage (2%)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a fraction (0.02) or a percentage (2%)"
        ) from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not from 0 to under 1 (100%)")
    return value


@frameworks_held
def _cmd_retrain(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError
    from edgecast.promotion import PromotionError
    from edgecast.retrain import RetrainError, RetrainOptions, retrain
    from edgecast.signing import SigningError

    overrides = {
        name: getattr(args, name)
        for name in ("boosters", "lag_days", "normalization")
        if getattr(args, name) is not None
    }
    options = RetrainOptions(
        building=args.building,
        store=args.store,
        data_dir=args.data_dir,
        holdout_days=args.holdout_days,
        margin=args.margin,
        epochs=args.epochs,
        seed=args.seed,
        cold=args.cold,
        overrides=overrides,
        litert=not args.no_litert,
        runtime=args.runtime,
        signing_key_path=args.signing_key,
        public_key_path=args.public_key,
    )
    try:
        result = retrain(options, log=lambda message: print(message, file=sys.stderr))
    except BundleError as exc:
        print(f"edgecast retrain: REFUSED, the champion is unchanged: {exc}", file=sys.stderr)
        return REFUSED
    except (RetrainError, PromotionError, SigningError, ValueError, OSError) as exc:
        print(f"edgecast retrain: {exc}", file=sys.stderr)
        return BAD_INPUT
    if args.json:
        print(
            json.dumps(
                {
                    "promoted": result.promoted,
                    "model_id": result.bundle_path.name,
                    "bundle": str(result.bundle_path),
                    "line": result.line,
                    "promotion": result.section,
                },
                default=str,
            )
        )
    else:
        print(result.line)
    return PROMOTED if result.promoted else REFUSED


@frameworks_held
def _cmd_promote(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, load_bundle
    from edgecast.floor import FloorError, check_floor
    from edgecast.forecaster import load_forecaster
    from edgecast.promotion import PromotionError, check_not_refused, set_champion
    from edgecast.signing import SigningError, load_public_key
    from edgecast.store import ModelStore

    try:
        path = ModelStore(args.store).path_of(args.model_id)
        public_key = load_public_key(args.public_key) if args.public_key else None
    except (LookupError, BundleError, SigningError, OSError) as exc:
        print(f"edgecast promote: {exc}", file=sys.stderr)
        return BAD_INPUT
    try:
        bundle = load_bundle(path, public_key)
        check_not_refused(bundle.manifest)
        check_floor(bundle.manifest, enforce=True)
        load_forecaster(bundle, "keras")
        building = str(bundle.manifest["training"]["data"]["building"])  # type: ignore[index]
    except (BundleError, SigningError, FloorError, PromotionError) as exc:
        print(f"edgecast promote: REFUSED {args.model_id}: {exc}", file=sys.stderr)
        return REFUSED
    except (KeyError, TypeError):
        print(f"edgecast promote: {args.model_id} records no building", file=sys.stderr)
        return BAD_INPUT
    try:
        before = set_champion(args.store, building, bundle.model_id, by="promote")
    except (PromotionError, OSError) as exc:
        print(f"edgecast promote: {exc}", file=sys.stderr)
        return BAD_INPUT
    print(f"{building}: {bundle.model_id} is the champion (before: {before or 'none'})")
    return PROMOTED


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers this module's subcommands."""
    retrain = sub.add_parser(
        "retrain",
        help="train a candidate on all data up to now and promote it only when it beats the "
        "champion on the most recent held-out days (exit 0 promoted, 3 refused, 2 bad input)",
    )
    retrain.add_argument("--building", required=True, help="building id")
    retrain.add_argument(
        "--json",
        action="store_true",
        help="print the decision as one JSON object (promoted, model_id, bundle, line, "
        "promotion) instead of the line",
    )
    retrain.add_argument("--store", type=Path, default=DEFAULT_STORE, help="the cloud store")
    retrain.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    retrain.add_argument(
        "--holdout-days",
        type=int,
        default=14,
        help="the last whole days of data, on which candidate and champion are compared and "
        "which neither trained on (default %(default)s)",
    )
    retrain.add_argument(
        "--margin",
        type=margin,
        default=0.02,
        help="how much lower the candidate's MAE must be than the champion's: a fraction or a "
        "percentage (default 2%%)",
    )
    retrain.add_argument("--epochs", type=int, default=40, help="maximum epochs (early stopping)")
    retrain.add_argument("--seed", type=int, default=0)
    retrain.add_argument(
        "--cold",
        action="store_true",
        help="start from a random draw even when the champion's architecture matches",
    )
    retrain.add_argument("--boosters", type=int, help="default: the champion's")
    retrain.add_argument("--lag-days", type=int, help="default: the champion's")
    retrain.add_argument("--normalization", choices=NORMALIZATIONS, help="default: the champion's")
    retrain.add_argument("--no-litert", action="store_true", help="skip the LiteRT export")
    retrain.add_argument(
        "--runtime",
        choices=["keras", "litert"],
        default="keras",
        help="the runtime both models are scored on (default %(default)s)",
    )
    retrain.add_argument("--signing-key", type=Path, help="Ed25519 private key (PEM) to sign with")
    retrain.add_argument(
        "--public-key",
        type=Path,
        help="verify the champion with this key (default: the --signing-key's, when it is signed)",
    )
    retrain.set_defaults(func=_cmd_retrain)

    promote = sub.add_parser(
        "promote",
        help="record a bundle of the store as its building's champion (after its checks and the "
        "naive floor)",
    )
    promote.add_argument("model_id", help="a bundle in the store")
    promote.add_argument("--store", type=Path, default=DEFAULT_STORE, help="the cloud store")
    promote.add_argument("--public-key", type=Path, help="require a signature by this key")
    promote.set_defaults(func=_cmd_promote)
