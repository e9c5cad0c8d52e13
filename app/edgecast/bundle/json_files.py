"""A bundle's JSON files, written in one layout and read as untrusted text."""

from __future__ import annotations

import json
import math

from edgecast.bundle.errors import BundleError, cut_short


def json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def parse_json(name: str, data: bytes) -> object:
    try:
        return json.loads(data)
    except RecursionError:
        raise BundleError(f"{name} nests arrays or objects too deeply to be read") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"{name} is not valid JSON: {cut_short(exc)}") from None


def json_object(name: str, data: bytes) -> dict[str, object]:
    value = parse_json(name, data)
    if not isinstance(value, dict):
        raise BundleError(f"{name} must hold a JSON object")
    return value


def finite_number(value: object) -> float | None:
    """``value`` as a finite float when it is a JSON number that a float holds; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
