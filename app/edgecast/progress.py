"""Training progress as a person reads it: one line per epoch where the output is a log (a pipe,
Ansible, CI), one line updated in place on a terminal, and how early stopping stands."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

BAR_WIDTH = 20
# A terminal's line is redrawn at most this often during an epoch.
REDRAW_S = 0.2


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = 0 if total <= 0 else min(width, done * width // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def patience_note(epochs_without_improvement: int, patience: int) -> str:
    """Where early stopping stands after an epoch (Keras's rule: no val_loss below the best so
    far for ``patience`` epochs in a row)."""
    if epochs_without_improvement == 0:
        return "best so far"
    return f"no better for {epochs_without_improvement}/{patience}"


def epoch_line(
    label: str,
    epoch: int,
    epochs: int,
    loss: float,
    val_loss: float,
    note: str,
    elapsed_s: float,
) -> str:
    width = len(str(epochs))
    return (
        f"{label}: epoch {epoch:>{width}}/{epochs}  loss {loss:.4f}  val_loss {val_loss:.4f}  "
        f"{note:<18}{elapsed_s:6.1f} s"
    )


def best_epoch(val_losses: list[float]) -> int:
    """The epoch (from 1) whose weights early stopping keeps: the first with the lowest val_loss,
    as Keras counts it (a later tie is no improvement, NaN never is)."""
    best, best_loss = 1, math.inf
    for epoch, loss in enumerate(val_losses, start=1):
        if loss < best_loss:
            best, best_loss = epoch, loss
    return best


def summary_line(
    label: str, val_losses: list[float], epochs: int, patience: int, elapsed_s: float
) -> str:
    """How training ended (early stopping after ``patience`` epochs without a better val_loss,
    or every epoch run) and the epoch whose weights were kept."""
    best = best_epoch(val_losses)
    ended = (
        f"stopped early at epoch {len(val_losses)}/{epochs}"
        if len(val_losses) < epochs
        else f"ran all {epochs} epochs"
    )
    return (
        f"{label}: {ended}; kept epoch {best} (val_loss {val_losses[best - 1]:.4f}); "
        f"{elapsed_s:.1f} s"
    )


@dataclass
class EpochProgress:
    """Writes a training's progress to ``stream``; ``live`` (a terminal) redraws one line."""

    label: str
    epochs: int
    patience: int
    stream: TextIO
    live: bool
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    best_val_loss: float = field(init=False, default=math.inf)
    epochs_run: int = field(init=False, default=0)
    waited: int = field(init=False, default=0)
    _last_epoch: str = field(init=False, default="")
    _drawn: int = field(init=False, default=0)
    _last_draw: float = field(init=False, default=-math.inf)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def _elapsed(self) -> float:
        return self.clock() - self.started

    def _draw(self, text: str) -> None:
        """Rewrites the terminal's current line (shorter text blanks what the last one left)."""
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    def batch_ended(self, step: int, steps: int, loss: object) -> None:
        """``loss``: Keras's running mean over the epoch's batches (a number or a tensor)."""
        now = self.clock()
        if not self.live or now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        shown = "" if loss is None else f"  loss {float(loss):.4f}"  # type: ignore[arg-type]
        self._draw(
            f"{self.label}: epoch {self.epochs_run + 1}/{self.epochs} {bar(step, steps)} "
            f"{step}/{steps}{shown}{self._last_epoch}  {now - self.started:.1f} s"
        )

    def epoch_ended(self, loss: float, val_loss: float) -> None:
        self.epochs_run += 1
        if val_loss < self.best_val_loss:
            self.best_val_loss, self.waited = val_loss, 0
        else:
            self.waited += 1
        note = patience_note(self.waited, self.patience)
        self._last_epoch = f"  (last val_loss {val_loss:.4f}, {note})"
        line = epoch_line(
            self.label,
            self.epochs_run,
            self.epochs,
            loss,
            val_loss,
            note,
            self._elapsed(),
        )
        if self.live:
            self._draw(line)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def training_ended(self) -> None:
        """Ends the terminal's line, so that whatever follows starts on a fresh one."""
        if self.live and self._drawn:
            self._draw("")
            self.stream.write("\r")
            self.stream.flush()
            self._drawn = 0


def keras_callback(progress: EpochProgress) -> Any:
    """The Keras callback that feeds ``progress`` (Keras is imported only when training)."""
    import keras

    class ProgressCallback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            steps = int(self.params.get("steps") or 0)
            progress.batch_ended(batch + 1, steps, (logs or {}).get("loss"))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            progress.epoch_ended(float(logs["loss"]), float(logs["val_loss"]))

        def on_train_end(self, logs: dict | None = None) -> None:
            progress.training_ended()

    return ProgressCallback()
