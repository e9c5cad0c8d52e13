"""``edgecast train``, ``evaluate`` and ``verify``: the model's side, before it ships."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgecast.architecture import NORMALIZATIONS, SBNConfig
from edgecast.cli.options import DEFAULT_STORE, LOSSES, add_parity_limits, utc_date
from edgecast.data import DEFAULT_DATA_DIR, list_buildings
from edgecast.framework_output import frameworks_held


@frameworks_held
def _cmd_train(args: argparse.Namespace) -> int:
    from edgecast.training import TrainOptions, format_metrics, train

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    try:
        config = SBNConfig(
            window=args.window,
            horizon=args.horizon,
            boosters=args.boosters,
            lag_days=args.lag_days,
            use_temperature=args.temperature,
            normalization=args.normalization,
        )
        for building in args.building or list_buildings(args.data_dir):
            result = train(
                TrainOptions(
                    building=building,
                    out_dir=args.out,
                    data_dir=args.data_dir,
                    config=config,
                    epochs=args.epochs,
                    seed=args.seed,
                    litert=not args.no_litert,
                    signing_key_path=args.signing_key,
                    until=args.until,
                    loss=args.loss,
                ),
                log=log,
                progress=None if args.quiet else sys.stderr,
            )
            print(format_metrics(building, result.metrics))
            print(f"bundle: {result.bundle_path}")
            if result.ratio_to_naive > 1.0:
                print(
                    f"WARNING: {result.bundle_path.name} is worse than seasonal naive on its "
                    f"held-out period (MAE {result.ratio_to_naive:.3f}x naive's): "
                    "rollout-model.yml refuses it unless -e rollout_allow_worse_than_naive=true",
                    file=sys.stderr,
                )
    except ValueError as exc:  # hyper-parameters out of range, data too short or unreadable
        print(f"edgecast train: {exc}", file=sys.stderr)
        return 2
    return 0


def _bundles_by_building(store: Path) -> dict[str, Path]:
    """The newest bundle in a store for each building it was trained on (by its manifest)."""
    newest: dict[str, tuple[str, Path]] = {}
    for path in sorted(store.iterdir()):
        try:
            manifest = json.loads((path / "manifest.json").read_text())
            building = manifest["training"]["data"]["building"]
            created = str(manifest["created"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if building not in newest or created > newest[building][0]:
            newest[building] = (created, path)
    return {building: path for building, (_, path) in newest.items()}


def _evaluation_targets(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """(building, bundle) pairs: one bundle on its own building, or a store's per building."""
    bundle: Path = args.bundle
    if not (bundle / "manifest.json").exists() and bundle.is_dir():
        if not args.buildings:
            raise ValueError(
                f"{bundle} is a folder of bundles: name the buildings to evaluate "
                "(--buildings all, or --buildings b1,b2)"
            )
        by_building = _bundles_by_building(bundle)
        wanted = (
            list_buildings(args.data_dir) if args.buildings == "all" else args.buildings.split(",")
        )
        missing = [b for b in wanted if b not in by_building]
        if missing:
            raise ValueError(f"{bundle} holds no bundle trained on {', '.join(missing)}")
        return [(b, by_building[b]) for b in wanted]
    if args.buildings == "all":
        raise ValueError("--buildings all needs a folder of bundles, one trained per building")
    return [(b, bundle) for b in args.buildings.split(",")] if args.buildings else [("", bundle)]


@frameworks_held
def _cmd_evaluate(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, ParityLimit, load_bundle
    from edgecast.evaluation import EvaluationError, evaluate_building, format_table, medians
    from edgecast.forecaster import load_forecaster
    from edgecast.signing import SigningError, load_public_key

    if args.start >= args.end:
        print("edgecast evaluate: --from must come before --to", file=sys.stderr)
        return 2
    rows = []
    try:
        public_key = load_public_key(args.public_key) if args.public_key else None
        limit = ParityLimit(args.max_parity_rtol, args.max_parity_atol_std)
        for building, path in _evaluation_targets(args):
            bundle = load_bundle(path, public_key, limit)
            forecaster, _ = load_forecaster(bundle, args.runtime)
            building = building or str(bundle.manifest["training"]["data"]["building"])  # type: ignore[index]
            rows.append(
                evaluate_building(forecaster, building, args.data_dir, args.start, args.end)
            )
    except (BundleError, SigningError) as exc:
        print(f"REFUSED: {exc}", file=sys.stderr)
        return 1
    except (EvaluationError, ValueError, OSError) as exc:
        print(f"edgecast evaluate: {exc}", file=sys.stderr)
        return 2
    if args.forecasts:
        args.forecasts.write_text(
            json.dumps(
                {
                    r.building: {
                        "model_id": r.model_id,
                        "last_timestamps": r.last_timestamps.tolist(),
                        "forecast_kwh": r.forecasts.tolist(),
                    }
                    for r in rows
                }
            )
        )
    if args.json:
        print(
            json.dumps(
                {
                    "from": args.start.isoformat(),
                    "to": args.end.isoformat(),
                    "buildings": [r.to_dict() for r in rows],
                    "median": medians(rows),
                },
                indent=2,
            )
        )
    else:
        print(format_table(rows))
    return 0


@frameworks_held
def _cmd_verify(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, ParityLimit, load_bundle
    from edgecast.forecaster import load_forecaster
    from edgecast.signing import SigningError, load_public_key
    from edgecast.store_rules import shown

    try:
        public_key = load_public_key(args.public_key) if args.public_key else None
        limit = ParityLimit(args.max_parity_rtol, args.max_parity_atol_std)
        bundle = load_bundle(args.bundle, public_key, limit)
        print(
            f"{bundle.model_id}: {len(bundle.manifest['files'])} files match their sha256, "  # type: ignore[arg-type]
            f"signature {'verified' if bundle.signed else 'absent (unsigned bundle)'}, "
            "weights match the architecture"
        )
        runtimes = (
            []
            if args.runtime == "none"
            else (["keras", "litert"] if args.runtime == "all" else [args.runtime])
        )
        for runtime in runtimes:
            if runtime == "litert" and bundle.litert_model is None and args.runtime == "all":
                print("litert: skipped, the bundle has no model.tflite")
                continue
            _, report = load_forecaster(bundle, runtime)
            print(
                f"{runtime}: parity ok, {report.cases} reference forecasts within tolerance "
                f"(max diff {report.max_abs_diff:.3g} kWh)"
            )
    except (BundleError, SigningError) as exc:
        print(f"REFUSED {args.bundle}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # whatever a bundle holds, verify answers with a refusal
        print(
            f"REFUSED {args.bundle}: unexpected {type(exc).__name__} while checking it: "
            f"{shown(str(exc))} (please report this)",
            file=sys.stderr,
        )
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers this module's subcommands."""
    train = sub.add_parser("train", help="train on a building's data and write a model bundle")
    train.add_argument("--building", action="append", help="building id (repeatable; default all)")
    train.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    train.add_argument("--out", type=Path, default=DEFAULT_STORE, help="folder to write bundles to")
    train.add_argument("--window", type=int, default=600, help="input hours (default 600)")
    train.add_argument("--horizon", type=int, default=24, help="forecast hours (default 24)")
    train.add_argument("--boosters", type=int, default=3)
    train.add_argument(
        "--lag-days", type=int, default=14, help="same hour on how many previous days (default 14)"
    )
    train.add_argument("--epochs", type=int, default=40, help="maximum epochs (early stopping)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--loss",
        choices=LOSSES,
        default="mae",
        help="training loss on the framed loads (default %(default)s)",
    )
    train.add_argument("--temperature", action="store_true", help="use outdoor temperature too")
    train.add_argument(
        "--normalization",
        choices=NORMALIZATIONS,
        default="window",
        help="scale each window by its own last week's mean and spread (default) or every "
        "window by the training period's",
    )
    train.add_argument("--no-litert", action="store_true", help="skip the LiteRT export")
    train.add_argument(
        "--quiet",
        action="store_true",
        help="print only the held-out accuracy and the bundle (no progress on stderr)",
    )
    train.add_argument("--signing-key", type=Path, help="Ed25519 private key (PEM) to sign with")
    train.add_argument(
        "--until",
        type=utc_date,
        help="train, validate and hold out only on data before this date (UTC); later rows "
        "are dropped unread",
    )
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="forecast every midnight of a period through the verified bundle path and score it "
        "against seasonal naive and the linear baseline",
    )
    evaluate.add_argument(
        "bundle", type=Path, help="bundle directory or tar, or a folder of bundles (--buildings)"
    )
    evaluate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    evaluate.add_argument(
        "--from", dest="start", type=utc_date, required=True, help="first forecast day (UTC)"
    )
    evaluate.add_argument(
        "--to", dest="end", type=utc_date, required=True, help="end of the period (exclusive)"
    )
    evaluate.add_argument(
        "--buildings",
        help="'all' (the data folder's buildings, each with its newest bundle in the folder "
        "given) or a comma-separated list; default: the bundle's own building",
    )
    evaluate.add_argument("--runtime", choices=["keras", "litert"], default="keras")
    evaluate.add_argument("--public-key", type=Path, help="require a signature by this key")
    evaluate.add_argument("--json", action="store_true", help="print the figures as JSON")
    evaluate.add_argument(
        "--forecasts", type=Path, help="write each day's forecast (kWh) to this JSON file"
    )
    add_parity_limits(evaluate)
    evaluate.set_defaults(func=_cmd_evaluate)

    verify = sub.add_parser("verify", help="check a bundle and say exactly what is wrong")
    verify.add_argument("bundle", type=Path, help="bundle directory or tar archive")
    verify.add_argument("--public-key", type=Path, help="require a signature by this key")
    verify.add_argument(
        "--runtime",
        choices=["keras", "litert", "all", "none"],
        default="all",
        help="runtimes to pass the parity gate on (default all)",
    )
    add_parity_limits(verify)
    verify.set_defaults(func=_cmd_verify)
