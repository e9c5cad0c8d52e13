"""``edgecast plot``: PNG charts of a bundle's held-out forecasts and of a request's forecast.

matplotlib is imported inside the commands, so the rest of the CLI (``serve`` above all) never
loads it. Bad input ends with one line on stderr and no PNG: exit 2 for what the user gave
(options, files, the output path), 1 for a refused bundle or a predictor that did not answer.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edgecast.cli.options import add_parity_limits, utc_date
from edgecast.data import DEFAULT_DATA_DIR
from edgecast.framework_output import frameworks_held
from edgecast.store_rules import shown

if TYPE_CHECKING:
    from edgecast.forecaster import Forecaster

HOUR = 3600
DAY = 24 * HOUR


class _Refused(Exception):
    """A bundle or a predictor said no: exit 1."""


def _check_out(out: Path) -> None:
    """Refuses an output the PNG could not be written to, before any work is done."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory: name a .png file in it")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: name a .png file")
    folder = out.parent
    if not folder.is_dir():
        raise ValueError(f"--out {out}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: the folder {folder} is not writable")


def _forecaster(args: argparse.Namespace, path: Path) -> Forecaster:
    from edgecast.bundle import BundleError, ParityLimit, load_bundle
    from edgecast.forecaster import load_forecaster
    from edgecast.signing import SigningError, load_public_key

    if not path.exists():
        raise ValueError(f"no bundle at {path}: give a bundle folder or .tar.gz")
    try:
        public_key = load_public_key(args.public_key) if args.public_key else None
        limit = ParityLimit(args.max_parity_rtol, args.max_parity_atol_std)
        forecaster, _ = load_forecaster(load_bundle(path, public_key, limit), args.runtime)
    except (BundleError, SigningError) as exc:
        raise _Refused(f"REFUSED {path}: {exc}") from None
    return forecaster


def _plot_bundle(args: argparse.Namespace) -> str:
    from edgecast.plot.chart import save_png
    from edgecast.plot.figures import bundle_chart
    from edgecast.plot.heldout import held_out

    if args.days <= 0:
        raise ValueError("--days must be at least 1")
    forecaster = _forecaster(args, args.bundle)
    held = held_out(forecaster, args.data_dir)
    step = args.step or held.horizon
    held.check_step(step)
    # By default the first midnight with a forecast made ``step`` hours before it.
    first = held.first_hour + (step - 1) * HOUR
    start = -(-first // DAY) * DAY if args.start is None else int(args.start.timestamp())
    end = start + args.days * DAY
    if not held.first_hour <= start < held.last_hour:
        raise ValueError(
            f"--from {_day(start)} is outside the held-out period, "
            f"{_day(held.first_hour)} to {_day(held.last_hour)}"
        )
    save_png(bundle_chart(held, step, start, end), args.out)
    mae = {name: row["mae"] for name, row in held.metrics().items()}
    return (
        f"{args.out}: {held.model_id} on {held.building}, {_day(start)} to "
        f"{_day(min(end, held.last_hour) - HOUR)}, {step} h ahead; "
        f"held-out MAE model {mae['sbn']:.3f}, seasonal naive {mae['seasonal_naive']:.3f}, "
        f"linear {mae['linear']:.3f} kWh"
    )


def _plot_request(args: argparse.Namespace) -> str:
    from edgecast.plot.chart import save_png
    from edgecast.plot.figures import request_chart
    from edgecast.plot.request import (
        RequestForecastError,
        forecast_locally,
        forecast_remotely,
        read_request,
    )

    if args.hours <= 0:
        raise ValueError("--hours must be at least 1")
    body, payload = read_request(args.input)
    if args.url:
        try:
            answer = forecast_remotely(args.url, body, payload, args.timeout)
        except RequestForecastError as exc:
            raise _Refused(str(exc)) from None
    else:
        answer = forecast_locally(_forecaster(args, args.bundle), body)
    save_png(request_chart(answer, args.hours), args.out)
    values = ", ".join(f"{v:.2f}" for v in answer.forecast)
    return f"{args.out}: {answer.model_id} ({answer.runtime}) forecast_kwh [{values}]"


def _day(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


@frameworks_held
def _cmd_plot(args: argparse.Namespace) -> int:
    try:
        _check_out(args.out)
        print(args.plot(args))
    except _Refused as exc:
        print(f"edgecast plot: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # the options, the request, the data: what the user gave
        print(f"edgecast plot: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"edgecast plot: {exc.filename or args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    except Exception as exc:  # whatever a bundle or an answer holds: one line, never a traceback
        print(
            f"edgecast plot: unexpected {type(exc).__name__}: {shown(str(exc))} "
            "(please report this)",
            file=sys.stderr,
        )
        return 1
    return 0


def _bundle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runtime", choices=["keras", "litert"], default="keras")
    parser.add_argument("--public-key", type=Path, help="require a signature by this key")
    add_parity_limits(parser)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers ``edgecast plot bundle`` and ``edgecast plot request``."""
    plot = sub.add_parser("plot", help="draw forecasts as a PNG chart (matplotlib)")
    kinds = plot.add_subparsers(dest="kind", required=True)

    bundle = kinds.add_parser(
        "bundle",
        help="a bundle's held-out forecasts against the actuals, seasonal naive and the linear "
        "baseline, made again from its weights on the data folder",
    )
    bundle.add_argument("bundle", type=Path, help="bundle directory or tar archive")
    bundle.add_argument("--out", type=Path, required=True, help="the PNG to write")
    bundle.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    bundle.add_argument(
        "--step",
        type=int,
        help="show each hour as forecast this many hours before it (default: the horizon, "
        "a day ahead)",
    )
    bundle.add_argument(
        "--from",
        dest="start",
        type=utc_date,
        help="first day shown (UTC; default: the first held-out day)",
    )
    bundle.add_argument("--days", type=int, default=14, help="days shown (default 14)")
    _bundle_options(bundle)
    bundle.set_defaults(func=_cmd_plot, plot=_plot_bundle)

    request = kinds.add_parser(
        "request",
        help="a prediction request's recent loads and the forecast for it, from a running "
        "predictor (--url) or a bundle here (--bundle)",
    )
    source = request.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a predictor to POST the request to (/v1/predict)")
    source.add_argument(
        "--bundle", type=Path, help="forecast here with this bundle, as a predictor would"
    )
    request.add_argument(
        "--input", type=Path, required=True, help="the request body (JSON), as /v1/predict takes"
    )
    request.add_argument("--out", type=Path, required=True, help="the PNG to write")
    request.add_argument(
        "--hours", type=int, default=168, help="the request's last hours shown (default 168)"
    )
    request.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the predictor (--url)"
    )
    _bundle_options(request)
    request.set_defaults(func=_cmd_plot, plot=_plot_request)
