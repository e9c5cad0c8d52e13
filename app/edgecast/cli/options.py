"""Argument types and options that several subcommands share."""

from __future__ import annotations

import argparse
import math
from datetime import UTC, datetime
from pathlib import Path

from edgecast.bundle import DEFAULT_PARITY_LIMIT

DEFAULT_STORE = Path("var/models")
LOSSES = ("mae", "mse", "huber")


def utc_date(text: str) -> datetime:
    """A date or time on the command line (ISO 8601; without an offset, UTC)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parity_limit(text: str) -> float:
    """A parity limit on the command line: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number >= 0")
    return value


def add_parity_limits(parser: argparse.ArgumentParser) -> None:
    """The node's bar for the parity tolerance a bundle asks for."""
    parser.add_argument(
        "--max-parity-rtol",
        type=parity_limit,
        default=DEFAULT_PARITY_LIMIT.rtol,
        help="refuse a bundle whose parity rtol is larger (default %(default)g)",
    )
    parser.add_argument(
        "--max-parity-atol-std",
        type=parity_limit,
        default=DEFAULT_PARITY_LIMIT.atol_std,
        help="refuse a bundle whose parity atol is larger than this fraction of the load's "
        "standard deviation (default %(default)g)",
    )
