"""``edgecast``: train in the cloud, verify bundles, serve and query predictions on the edge."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from edgecast.cli import artifacts, data, model, plot, retrain, serving


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgecast", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    model.add_commands(sub)
    retrain.add_commands(sub)
    data.add_commands(sub)
    serving.add_commands(sub)
    artifacts.add_commands(sub)
    plot.add_commands(sub)
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
