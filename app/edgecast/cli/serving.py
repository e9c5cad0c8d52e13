"""``edgecast serve``, ``service`` and ``query``: the predictor on the edge and a client of it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from edgecast.cli.options import DEFAULT_STORE, add_parity_limits
from edgecast.data import DEFAULT_DATA_DIR, load_building
from edgecast.predictor.threads import default_threads


def _cmd_serve(args: argparse.Namespace) -> int:
    from edgecast.framework_output import load_tensorflow
    from edgecast.predictor.config import ConfigError, PredictorConfig, read_admin_token
    from edgecast.predictor.server import serve

    if args.runtime == "keras":
        # Loaded here, before the server's threads start, so that its start-up lines (the CUDA
        # probe, oneDNN) stay out of the predictor's log.
        load_tensorflow()

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
            threads=args.threads if args.threads is not None else default_threads(),
            shutdown_delay_s=args.shutdown_delay,
            drain_timeout_s=args.drain_timeout,
            connection_limit=args.connection_limit,
            idle_timeout_s=args.idle_timeout,
            request_timeout_s=args.request_timeout,
            first_year=args.first_year,
            last_year=args.last_year,
            max_parity_rtol=args.max_parity_rtol,
            max_parity_atol_std=args.max_parity_atol_std,
            shadow=args.shadow or args.shadow_model_id is not None,
            shadow_model_id=args.shadow_model_id,
            shadow_rate=args.shadow_rate,
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers this module's subcommands."""
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
    serve.add_argument(
        "--threads",
        type=int,
        help=f"prediction threads (default: one per usable CPU, 2 to 4; {default_threads()} here)",
    )
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
    serve.add_argument(
        "--shadow",
        action="store_true",
        help="also forecast every request with the previous model (the one a swap replaced), "
        "off the response path, and score both on the same hours (GET /v1/model's shadow)",
    )
    serve.add_argument(
        "--shadow-model-id",
        help="load this model from the store at start as the previous one and score it in "
        "shadow (implies --shadow): a predictor started for a new model compares it with the old",
    )
    serve.add_argument(
        "--shadow-rate",
        type=float,
        default=20.0,
        help="at most this many shadow forecasts a second; requests beyond are not shadowed "
        "(counted as skipped), so a saturated predictor keeps its latency (default 20)",
    )
    add_parity_limits(serve)
    serve.set_defaults(func=_cmd_serve)

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
