"""``edgecast ingest``: new hourly readings into the data folder that training reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgecast.data import DEFAULT_DATA_DIR


def _cmd_ingest(args: argparse.Namespace) -> int:
    from edgecast.ingest import IngestError, ingest

    try:
        if args.file == "-":
            data, source = sys.stdin.buffer.read(), "<stdin>"
        else:
            data, source = Path(args.file).read_bytes(), args.file
        report = ingest(args.building, data, args.data_dir, source=source, new_building=args.new)
    except IngestError as exc:
        print(f"edgecast ingest: refused, nothing written: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"edgecast ingest: {exc.filename or args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    print(report.line())
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Registers this module's subcommands."""
    ingest = sub.add_parser(
        "ingest",
        help="merge new hourly readings of a building (CSV in the archive's format, or JSON "
        "lines) into the data folder, idempotently",
    )
    ingest.add_argument("file", help="CSV or JSON-lines file of readings, or - for stdin")
    ingest.add_argument("--building", required=True, help="building id")
    ingest.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    ingest.add_argument(
        "--new", action="store_true", help="start a building the data folder does not hold yet"
    )
    ingest.set_defaults(func=_cmd_ingest)
