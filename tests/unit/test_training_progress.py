"""Training progress: a line per epoch in logs, one redrawn line on a terminal, and early
stopping counted as Keras counts it."""

from __future__ import annotations

import io
import itertools
import math
import re

import pytest

from edgecast.progress import (
    EpochProgress,
    bar,
    best_epoch,
    epoch_line,
    patience_note,
    summary_line,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def progress(live: bool, epochs: int = 40, patience: int = 3) -> tuple[EpochProgress, Clock]:
    clock = Clock()
    return EpochProgress("b13", epochs, patience, io.StringIO(), live, clock=clock), clock


def test_an_epoch_line_says_where_training_is_and_how_early_stopping_stands():
    line = epoch_line("b13", 7, 40, 0.21234, 0.19876, "no better for 2/5", 12.34)
    assert line == ("b13: epoch  7/40  loss 0.2123  val_loss 0.1988  no better for 2/5   12.3 s")
    # aligned: lines of one training have the same width up to the elapsed time
    assert len(epoch_line("b13", 12, 40, 1.0, 1.0, "best so far", 1.0)) == len(line)


@pytest.mark.parametrize(
    ("done", "total", "shown"),
    [
        (0, 10, "[..........]"),
        (5, 10, "[#####.....]"),
        (10, 10, "[##########]"),
        (3, 0, "[..........]"),
    ],
)
def test_the_bar_fills_with_the_steps_done(done, total, shown):
    assert bar(done, total, width=10) == shown


def test_the_patience_note():
    assert patience_note(0, 5) == "best so far"
    assert patience_note(3, 5) == "no better for 3/5"


@pytest.mark.parametrize(
    ("val_losses", "best"),
    [
        ([0.5, 0.4, 0.45], 2),
        ([0.5, 0.4, 0.4], 2),  # a tie is no improvement: the first keeps it
        ([math.nan, 0.4, 0.3], 3),
        ([0.5, math.nan, 0.6], 1),
    ],
)
def test_the_best_epoch_is_the_one_early_stopping_keeps(val_losses, best):
    assert best_epoch(val_losses) == best


def test_the_summary_says_whether_early_stopping_ended_training():
    stopped = summary_line("b13", [0.5, 0.3, 0.31, 0.32], 40, 2, 8.04)
    assert stopped == "b13: stopped early at epoch 4/40; kept epoch 2 (val_loss 0.3000); 8.0 s"
    full = summary_line("b13", [0.5, 0.3, 0.2], 3, 5, 3.0)
    assert full == "b13: ran all 3 epochs; kept epoch 3 (val_loss 0.2000); 3.0 s"


def test_in_a_log_each_epoch_is_one_line_and_batches_write_nothing():
    shown, clock = progress(live=False, epochs=5, patience=2)
    for loss, val_loss in ((0.5, 0.40), (0.4, 0.35), (0.3, 0.35), (0.3, 0.36)):
        for step in range(1, 4):
            clock.now += 1
            shown.batch_ended(step, 3, loss)
        shown.epoch_ended(loss, val_loss)
    shown.training_ended()
    lines = shown.stream.getvalue().splitlines()  # type: ignore[attr-defined]
    assert [line.split("  ")[0] for line in lines] == [f"b13: epoch {n}/5" for n in range(1, 5)]
    notes = [re.search(r"val_loss \S+  (.+?) +[\d.]+ s$", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert notes == [
        "best so far",
        "best so far",
        "no better for 1/2",
        "no better for 2/2",
    ]
    assert lines[-1].endswith("12.0 s")
    assert "\r" not in shown.stream.getvalue()  # type: ignore[attr-defined]


def test_on_a_terminal_one_line_is_redrawn_and_ended_before_what_follows():
    shown, clock = progress(live=True, epochs=2)
    shown.batch_ended(1, 4, 0.9)
    clock.now += 0.05
    shown.batch_ended(2, 4, 0.8)  # too soon after the last draw: not drawn
    clock.now += 1
    shown.batch_ended(3, 4, 0.7)
    shown.epoch_ended(0.7, 0.6)
    clock.now += 1
    shown.batch_ended(1, 4, 0.5)
    shown.training_ended()
    text = shown.stream.getvalue()  # type: ignore[attr-defined]
    assert "\n" not in text
    draws = text.split("\r")[1:]
    assert draws[0].startswith("b13: epoch 1/2 [#####...............] 1/4  loss 0.9000")
    assert draws[1].startswith("b13: epoch 1/2 [###############.....] 3/4  loss 0.7000")
    assert draws[2].startswith("b13: epoch 1/2  loss 0.7000  val_loss 0.6000  best so far")
    assert "(last val_loss 0.6000, best so far)" in draws[3]
    assert draws[3].startswith("b13: epoch 2/2 [#####...")
    # the last draw blanks the line, the cursor goes back to its start
    assert draws[-2].strip() == "" and draws[-1] == ""
    # a shorter line blanks what a longer one left
    assert all(
        len(later) >= len(earlier.rstrip()) for earlier, later in itertools.pairwise(draws[:-1])
    )
