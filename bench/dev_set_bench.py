"""Train on year 1, forecast year 2: the development set's judgement of the forecasting model.

For every building of the development set (../shared/data/cambridge-estates-dev beside the
checkout, two complete years each) this does what ``edgecast train --until Y2`` then
``edgecast evaluate BUNDLE --from Y2 --to Y3`` do: train on the first year only, then load the
bundle through the verified path (digests, layout, parity gate) and forecast each midnight of the
second year from the 600 hours before it, one window at a time as the predictor does. It prints
one row per building and the medians, and optionally writes JSON and an SVG plot of each
building's MAE ratio to seasonal naive. A benchmark, not a test: pytest does not collect it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_SET = REPO.parent / "shared" / "data" / "cambridge-estates-dev"


def first_year(data_dir: Path, building: str) -> int:
    years = sorted(int(p.stem) for p in (data_dir / "electricity" / building).glob("*.csv"))
    if len(years) < 2:
        raise SystemExit(f"{building}: needs two years of data, found {years}")
    return years[0]


def ratio_plot(rows: list[dict], title: str) -> str:
    """A bar per building of its MAE ratio to seasonal naive, with the 1.0 line: plain SVG."""
    width, height, left, top, bar = 760, 300, 48, 28, 30
    scale_max = max(1.2, *(r["ratio_to_seasonal_naive"] for r in rows)) * 1.05
    y = lambda value: top + (height - top - 40) * (1 - value / scale_max)  # noqa: E731
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="16" font-size="13">{title}</text>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}</text>')
    for i, row in enumerate(rows):
        x = left + 8 + i * (bar + 5)
        value = row["ratio_to_seasonal_naive"]
        colour = "#c0392b" if value > 1.0 else "#2e86c1"
        parts.append(
            f'<rect x="{x}" y="{y(value):.1f}" width="{bar}" height="{y(0) - y(value):.1f}" '
            f'fill="{colour}"><title>{row["building"]}: {value:.3f}</title></rect>'
        )
        parts.append(
            f'<text x="{x + bar / 2}" y="{y(0) + 14:.1f}" text-anchor="middle">'
            f"{row['building']}</text>"
        )
    right = left + 8 + len(rows) * (bar + 5)
    parts.append(
        f'<line x1="{left}" x2="{right}" y1="{y(1.0):.1f}" y2="{y(1.0):.1f}" stroke="black" '
        'stroke-dasharray="4 3"/>'
    )
    parts.append(f'<line x1="{left}" x2="{right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="black"/>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEV_SET)
    parser.add_argument("--buildings", help="comma-separated (default: every building)")
    parser.add_argument("--out", type=Path, help="bundle folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the rows and medians here")
    parser.add_argument("--svg", type=Path, help="plot the ratio to seasonal naive here")
    parser.add_argument("--normalization", choices=("global", "window"), default="window")
    parser.add_argument("--recent-hours", type=int, default=24)
    parser.add_argument("--lag-days", type=int, default=14)
    parser.add_argument("--loss", choices=("mae", "mse", "huber"), default="mae")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--no-litert", action="store_true", help="skip the LiteRT export")
    parser.add_argument("--label", default="SBN", help="the model's name in the plot's title")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecast.architecture import SBNConfig
    from edgecast.bundle import load_bundle
    from edgecast.data import list_buildings
    from edgecast.evaluation import evaluate_building, format_table, medians
    from edgecast.forecaster import load_forecaster
    from edgecast.training import TrainOptions, train

    buildings = args.buildings.split(",") if args.buildings else list_buildings(args.data_dir)
    out = args.out or Path(tempfile.mkdtemp(prefix="dev-set-bench-"))
    results, rows, seconds = [], [], {}
    for building in buildings:
        year = first_year(args.data_dir, building)
        until, end = datetime(year + 1, 1, 1, tzinfo=UTC), datetime(year + 2, 1, 1, tzinfo=UTC)
        started = time.perf_counter()
        # The LiteRT converter prints to stdout; the table is what stdout is for.
        with contextlib.redirect_stdout(sys.stderr):
            trained = train(
                TrainOptions(
                    building=building,
                    out_dir=out,
                    data_dir=args.data_dir,
                    config=SBNConfig(
                        normalization=args.normalization,
                        recent_hours=args.recent_hours,
                        lag_days=args.lag_days,
                    ),
                    epochs=args.epochs,
                    seed=args.seed,
                    until=until,
                    loss=args.loss,
                    patience=args.patience,
                    litert=not args.no_litert,
                ),
                log=lambda message: print(message, file=sys.stderr),
            )
        seconds[building] = time.perf_counter() - started
        forecaster, _ = load_forecaster(load_bundle(trained.bundle_path), "keras")
        result = evaluate_building(forecaster, building, args.data_dir, until, end)
        results.append(result)
        rows.append(
            result.to_dict()
            | {
                "train_seconds": seconds[building],
                "held_out_ratio_to_seasonal_naive": trained.ratio_to_naive,
            }
        )
        print(
            f"{building}: trained on {year} in {seconds[building]:.1f} s, year {year + 1}: "
            f"{result.ratio_to_naive:.3f}x seasonal naive, {result.ratio_to_linear:.3f}x linear",
            file=sys.stderr,
        )
    print(format_table(results))
    summary = medians(results) | {
        "train_seconds_median": statistics.median(seconds.values()),
        "train_seconds_max": max(seconds.values()),
        # Year 1's own held-out weeks: what hyper-parameters are chosen on, never year 2.
        "held_out_ratio_median": statistics.median(
            r["held_out_ratio_to_seasonal_naive"] for r in rows
        ),
    }
    print(
        f"training per building-year: median {summary['train_seconds_median']:.1f} s, "
        f"max {summary['train_seconds_max']:.1f} s (bundle, LiteRT export and both parity "
        "gates included)"
    )
    print(
        "validation (year 1's held-out weeks): median MAE ratio to seasonal naive "
        f"{summary['held_out_ratio_median']:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps({"buildings": rows, "median": summary}, indent=2) + "\n")
    if args.svg:
        title = (
            f"{args.label}: MAE ratio to seasonal naive, year 2 (median "
            f"{summary['mae_ratio_to_seasonal_naive']:.3f})"
        )
        args.svg.write_text(ratio_plot(rows, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
