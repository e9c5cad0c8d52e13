"""The one error a bundle check raises, and a library's message cut short for it."""

from __future__ import annotations

MAX_REASON_CHARS = 200


class BundleError(ValueError):
    """A bundle that must not be used; the message says exactly what is wrong."""


def cut_short(exc: BaseException) -> str:
    """A library's error message, cut short: the message of a refusal stays readable."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_REASON_CHARS else f"{text[: MAX_REASON_CHARS - 3]}..."
