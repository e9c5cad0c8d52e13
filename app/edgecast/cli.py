"""``edgecast``: train in the cloud, verify bundles, serve and query predictions on the edge."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from edgecast.architecture import NORMALIZATIONS, SBNConfig
from edgecast.bundle import DEFAULT_PARITY_LIMIT
from edgecast.data import DEFAULT_DATA_DIR, list_buildings, load_building

DEFAULT_STORE = Path("var/models")
LOSSES = ("mae", "mse", "huber")


def _cmd_train(args: argparse.Namespace) -> int:
    from edgecast.training import TrainOptions, format_metrics, train

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
                log=lambda message: print(message, file=sys.stderr),
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from edgecast.predictor.config import ConfigError, PredictorConfig, read_admin_token
    from edgecast.predictor.server import serve

    try:
        config = PredictorConfig(
            model_store=args.store,
            model_id=args.model_id,
            runtime=args.runtime,
            public_key_path=args.public_key,
            admin_token=read_admin_token(args.admin_token_file),
            max_body_bytes=args.max_body_bytes,
            host=args.host,
            port=args.port,
            threads=args.threads,
            shutdown_delay_s=args.shutdown_delay,
            drain_timeout_s=args.drain_timeout,
            connection_limit=args.connection_limit,
            idle_timeout_s=args.idle_timeout,
            request_timeout_s=args.request_timeout,
            first_year=args.first_year,
            last_year=args.last_year,
            max_parity_rtol=args.max_parity_rtol,
            max_parity_atol_std=args.max_parity_atol_std,
        )
        code = serve(config)
    except ConfigError as exc:
        print(f"edgecast serve: {exc}", file=sys.stderr)
        return 2
    # Drained and closed, nothing is left to clean up; the interpreter's own teardown (of
    # TensorFlow's runtime above all) would keep the process alive seconds longer while the
    # kubelet or a rollout waits for it to end.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from edgecast.signing import generate_keypair

    key = generate_keypair(args.private, args.public)
    print(
        f"key id {key}: private key {args.private} (keep it in the cloud), public key {args.public}"
    )
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, sign_bundle
    from edgecast.signing import SigningError, load_private_key

    try:
        key = sign_bundle(args.bundle, load_private_key(args.key))
    except (BundleError, SigningError) as exc:
        print(f"REFUSED {args.bundle}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.bundle}: signed with key id {key}")
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from edgecast.bundle import BundleError, pack_bundle

    try:
        print(pack_bundle(args.bundle, args.output))
    except BundleError as exc:
        print(f"REFUSED {args.bundle}: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_service(args: argparse.Namespace) -> int:
    from edgecast.service import ServiceError, start, status, stop

    serve_args = args.serve_args
    try:
        if args.action == "start":
            result: dict[str, object] = start(
                args.pid_file, args.log_file, serve_args, args.ready_url, args.timeout
            )
        elif args.action == "stop":
            result = {"changed": stop(args.pid_file, args.timeout)}
        else:
            state = status(args.pid_file)
            result = {**state.to_dict(), "args_match": state.running and state.args == serve_args}
    except ServiceError as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    """Sends the last ``window`` hours of a shipped building and prints the forecast."""
    frame = load_building(args.building, args.data_dir, weather_station=None)
    series = frame["load"].interpolate(limit_area="inside").dropna()
    window = series.iloc[-args.window :]
    body = {
        "loads": [round(float(v), 3) for v in window],
        "last_timestamp": window.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/v1/predict",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"HTTP {exc.code}: {exc.read().decode()}", file=sys.stderr)
        return 1
    print(
        f"forecast by {answer['model_id']} ({answer['runtime']} runtime) for {args.building}, "
        f"after {body['last_timestamp']}:"
    )
    for stamp, value in zip(answer["timestamps"], answer["forecast_kwh"], strict=True):
        print(f"  {stamp}  {value:8.2f} kWh")
    return 0


def _utc_date(text: str) -> datetime:
    """A date or time on the command line (ISO 8601; without an offset, UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parity_limit(text: str) -> float:
    """A parity limit on the command line: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def _add_parity_limits(parser: argparse.ArgumentParser) -> None:
    """The node's bar for the parity tolerance a bundle asks for."""
    parser.add_argument(
        "--max-parity-rtol",
        type=_parity_limit,
        default=DEFAULT_PARITY_LIMIT.rtol,
        help="refuse a bundle whose parity rtol is larger (default %(default)g)",
    )
    parser.add_argument(
        "--max-parity-atol-std",
        type=_parity_limit,
        default=DEFAULT_PARITY_LIMIT.atol_std,
        help="refuse a bundle whose parity atol is larger than this fraction of the load's "
        "standard deviation (default %(default)g)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgecast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

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
    train.add_argument("--signing-key", type=Path, help="Ed25519 private key (PEM) to sign with")
    train.add_argument(
        "--until",
        type=_utc_date,
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
        "--from", dest="start", type=_utc_date, required=True, help="first forecast day (UTC)"
    )
    evaluate.add_argument(
        "--to", dest="end", type=_utc_date, required=True, help="end of the period (exclusive)"
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
    _add_parity_limits(evaluate)
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
    _add_parity_limits(verify)
    verify.set_defaults(func=_cmd_verify)

    serve = sub.add_parser("serve", help="serve predictions over HTTP (waitress)")
    serve.add_argument("--store", type=Path, default=DEFAULT_STORE, help="model store folder")
    serve.add_argument("--model-id", help="model to serve first (default: newest in the store)")
    serve.add_argument("--runtime", choices=["keras", "litert"], default="keras")
    serve.add_argument("--public-key", type=Path, help="only serve bundles signed by this key")
    serve.add_argument(
        "--admin-token-file",
        type=Path,
        help="enables the admin API (also EDGECAST_ADMIN_TOKEN[_FILE])",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--threads", type=int, default=4, help="prediction threads (default 4)")
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=64 * 1024,
        help="larger request bodies get a JSON 413 (default 65536)",
    )
    serve.add_argument(
        "--connection-limit",
        type=int,
        default=1000,
        help="open connections at most (default 1000); at the limit the connection waiting "
        "longest on its client (idle, or sending slowly) is closed to make room for a new one",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="seconds a keep-alive connection may wait between requests (default 30)",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=10.0,
        help="seconds a client has to send a whole request, headers and body, from its first "
        "byte (the first request: from the connection); then a JSON 408 (default 10)",
    )
    serve.add_argument(
        "--first-year",
        type=int,
        default=2000,
        help="timestamps before this year get a 400 (default 2000)",
    )
    serve.add_argument(
        "--last-year",
        type=int,
        default=2100,
        help="timestamps after this year get a 400 (default 2100)",
    )
    serve.add_argument(
        "--shutdown-delay",
        type=float,
        default=0.0,
        help="seconds to keep serving, not ready, after SIGTERM",
    )
    serve.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait, after the delay, for requests in progress (default 30)",
    )
    _add_parity_limits(serve)
    serve.set_defaults(func=_cmd_serve)

    keygen = sub.add_parser("keygen", help="create an Ed25519 key pair for signing bundles")
    keygen.add_argument("--private", type=Path, required=True)
    keygen.add_argument("--public", type=Path, required=True)
    keygen.set_defaults(func=_cmd_keygen)

    sign = sub.add_parser("sign", help="sign a bundle's manifest with an Ed25519 private key")
    sign.add_argument("bundle", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="private key (PEM)")
    sign.set_defaults(func=_cmd_sign)

    pack = sub.add_parser("pack", help="write a verified bundle directory as a .tar.gz")
    pack.add_argument("bundle", type=Path)
    pack.add_argument("-o", "--output", type=Path, required=True)
    pack.set_defaults(func=_cmd_pack)

    service = sub.add_parser(
        "service",
        help="run the predictor in the background (pid file), idempotently",
        usage="edgecast service {start,stop,status} --pid-file PATH [options] -- [serve options]",
    )
    service.add_argument("action", choices=["start", "stop", "status"])
    service.add_argument("--pid-file", type=Path, required=True)
    service.add_argument("--log-file", type=Path, default=Path("predictor.log"))
    service.add_argument("--ready-url", default="http://127.0.0.1:8080/readyz")
    service.add_argument("--timeout", type=float, default=180.0)
    service.set_defaults(serve_args=[])
    service.set_defaults(func=_cmd_service)

    query = sub.add_parser("query", help="ask a predictor for a forecast from shipped data")
    query.add_argument("--url", default="http://127.0.0.1:8080")
    query.add_argument("--building", default="b13")
    query.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    query.add_argument("--window", type=int, default=600)
    query.set_defaults(func=_cmd_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    argv = sys.argv[1:] if argv is None else argv
    # `edgecast service start [options] -- <serve arguments>`: what follows -- is passed on.
    tail: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, tail = argv[:split], argv[split + 1 :]
    args = build_parser().parse_args(argv)
    if tail:
        if args.command != "service":
            build_parser().error("'--' is only used by 'edgecast service'")
        args.serve_args = tail
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
