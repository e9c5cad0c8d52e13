"""Line charts of hourly series, drawn off-screen with matplotlib's Agg canvas into a PNG.

No display and no pyplot: a ``Figure`` on its own Agg canvas, so drawing changes no global
state and works on a headless cloud host or edge node. A PNG appears at its path whole or not at
all (a temporary file beside it, renamed when complete), so a failed run never leaves half an
image that looks like a result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from PIL import Image


def epoch_hours(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (UTC) as datetime64, which matplotlib puts on a date axis."""
    return np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")


@dataclass(frozen=True)
class Line:
    """One series: ``times`` (datetime64) and ``values`` of equal length; NaN leaves a gap."""

    label: str
    times: np.ndarray
    values: np.ndarray
    color: str = "black"
    style: str = "-"
    width: float = 1.2
    marker: str | None = None


@dataclass(frozen=True)
class Chart:
    """What a chart shows; ``divider`` draws a vertical line at that time (a forecast's start)."""

    title: str
    lines: tuple[Line, ...]
    ylabel: str = "kWh"
    divider: np.datetime64 | None = None
    divider_label: str = ""
    size_inches: tuple[float, float] = (10.0, 4.5)
    dpi: int = 100


def draw(chart: Chart) -> Figure:
    """The chart as a figure on an Agg canvas."""
    figure = Figure(figsize=chart.size_inches, dpi=chart.dpi, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for line in chart.lines:
        if len(line.times) != len(line.values):
            raise ValueError(
                f"line {line.label!r} has {len(line.times)} times and {len(line.values)} values"
            )
        axes.plot(
            line.times,
            line.values,
            label=line.label,
            color=line.color,
            linestyle=line.style,
            linewidth=line.width,
            marker=line.marker,
            markersize=3,
        )
    if chart.divider is not None:
        axes.axvline(
            chart.divider, color="grey", linestyle=":", linewidth=1, label=chart.divider_label
        )
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_ylabel(chart.ylabel)
    axes.set_title(chart.title, fontsize=10, loc="left")
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=len(chart.lines) + 1, fontsize=8, frameon=False)
    return figure


def _png(figure: Figure) -> Image.Image:
    """The figure's pixels on a palette of 128 colours: a third of the bytes of full colour,
    which the antialiased edges of a few lines do not need."""
    canvas = figure.canvas
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    return Image.fromarray(pixels).convert("RGB").quantize(colors=128)


def save_png(chart: Chart, out: Path) -> Path:
    """Draws ``chart`` into the PNG ``out``, which is replaced only once the image is complete."""
    out = Path(out)
    figure = draw(chart)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            _png(figure).save(stream, format="PNG", optimize=True)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return out
