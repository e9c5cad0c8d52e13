"""Keeps TensorFlow's and LiteRT's own output out of what edgecast prints.

Their C++ code logs through absl before anything can configure it (the CUDA probe, oneDNN
notes, the converter's graph warnings), so ``TF_CPP_MIN_LOG_LEVEL`` does not silence it and no
level can tell those lines from real errors. Instead, while a command works with the frameworks,
file descriptors 1 and 2 point at a temporary file and Python's ``sys.stdout``/``sys.stderr``
at the original outputs: what edgecast prints or logs goes out as before, what the frameworks'
native code writes is held, and it is shown after all when the command fails with an exception.
``EDGECAST_FRAMEWORK_OUTPUT=show`` lets it through as it comes, for debugging the frameworks.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TextIO, TypeVar

Result = TypeVar("Result")

SHOW_VARIABLE = "EDGECAST_FRAMEWORK_OUTPUT"
# While output is held: the Python stream on descriptor 1, which now writes to the held file.
_held_stdout: list[TextIO] = []


def quiet_framework_logging() -> None:
    """The frameworks' Python-level logging at errors only, set before they load: TensorFlow's
    logger reports every SavedModel write at INFO and AutoGraph's doubts about a function at
    WARNING; errors that matter reach edgecast as exceptions."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _writes_to(stream: TextIO | None, fd: int) -> bool:
    try:
        return stream is not None and stream.fileno() == fd
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


def _reopened(fd: int, like: TextIO) -> TextIO:
    return open(fd, "w", buffering=1, encoding=like.encoding, errors=like.errors)


@contextlib.contextmanager
def held_native_output() -> Iterator[None]:
    """Holds what native code writes to file descriptors 1 and 2 during the block.

    A no-op where ``sys.stdout``/``sys.stderr`` are not descriptors 1 and 2 (already held, or
    replaced by a caller) or where ``EDGECAST_FRAMEWORK_OUTPUT=show``.
    """
    if (
        os.environ.get(SHOW_VARIABLE) == "show"
        or not _writes_to(sys.stdout, 1)
        or not _writes_to(sys.stderr, 2)
    ):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    originals = (sys.stdout, sys.stderr)
    ours = (_reopened(os.dup(1), sys.stdout), _reopened(os.dup(2), sys.stderr))
    # Handlers made before the block (logging.basicConfig) keep writing where they did.
    handlers = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream in originals
    ]
    with tempfile.TemporaryFile() as held:
        failed = False
        for handler in handlers:
            handler.setStream(ours[originals.index(handler.stream)])
        os.dup2(held.fileno(), 1)
        os.dup2(held.fileno(), 2)
        sys.stdout, sys.stderr = ours
        _held_stdout.append(originals[0])
        try:
            yield
        except Exception:
            failed = True
            raise
        finally:
            _held_stdout.pop()
            for stream in (*originals, *ours):
                stream.flush()
            os.dup2(ours[0].fileno(), 1)
            os.dup2(ours[1].fileno(), 2)
            sys.stdout, sys.stderr = originals
            for handler in handlers:
                handler.setStream(originals[ours.index(handler.stream)])
            for stream in ours:
                stream.close()
            if failed:
                _show(held, sys.stderr)


def _show(held: io.BufferedRandom, stream: TextIO) -> None:
    held.seek(0)
    text = held.read().decode(errors="replace").rstrip()
    if text:
        stream.write(f"--- what the frameworks wrote before the failure ---\n{text}\n---\n")
        stream.flush()


@contextlib.contextmanager
def held_framework_prints() -> Iterator[None]:
    """Python-level prints of a framework call (Keras's SavedModel export lists every endpoint
    and captured variable on ``sys.stdout``) join the held native output; where nothing is
    held they are printed as usual."""
    if not _held_stdout:
        yield
        return
    with contextlib.redirect_stdout(_held_stdout[-1]):
        try:
            yield
        finally:
            _held_stdout[-1].flush()


def load_tensorflow() -> None:
    """Imports TensorFlow and lets it probe its devices with their output held: the CUDA and
    oneDNN lines of every start."""
    quiet_framework_logging()
    with held_native_output():
        import tensorflow as tf

        tf.config.list_physical_devices()


def frameworks_held(command: Callable[..., Result]) -> Callable[..., Result]:
    """A command that works with the frameworks, their output held while it runs."""

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> Result:
        quiet_framework_logging()
        with held_native_output():
            return command(*args, **kwargs)

    return run
