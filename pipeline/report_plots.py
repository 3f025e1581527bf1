"""The report's PNG plots, drawn with matplotlib's object-oriented API.

Figures are built with `matplotlib.figure.Figure` and never through pyplot, so drawing
a report changes no global matplotlib state and needs no display.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

GOOD_COLOR = "#2e7d32"
BAD_COLOR = "#c62828"
BLANK_COLOR = "#9e9e9e"
BAR_COLOR = "#5c6bc0"
LABEL_COLORS = {"good": GOOD_COLOR, "bad": BAD_COLOR, "blank": BLANK_COLOR}
# A y axis turns logarithmic when the fullest bin has this many times the emptiest one's count.
LOG_COUNT_RATIO = 100
DPI = 100


def png_data_uri(figure: Figure) -> str:
    """Render a figure as a ``data:image/png;base64,...`` URI."""
    buffer = io.BytesIO()
    # Without the Software entry the PNG bytes do not depend on the matplotlib version.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histogram(
    title: str,
    edges: np.ndarray,
    counts: np.ndarray,
    log_x: bool,
    threshold: float | None,
    note: str,
) -> Figure:
    """Histogram of one scorer's segment scores, with the threshold as a dashed line.

    Args:
        title: first line of the title, naming the scorer.
        edges, counts: histogram as `numpy.histogram` returns it, counts swapped first.
        log_x: bins are spaced logarithmically, so the x axis is too.
        threshold: drawn when it is not None and lies on the axis.
        note: second line of the title, such as the fraction labelled good.
    """
    figure = Figure(figsize=(7.5, 3.4), layout="constrained")
    axes = figure.add_subplot()
    axes.stairs(counts, edges, fill=True, color=BAR_COLOR, alpha=0.85)
    if log_x:
        axes.set_xscale("log")
    nonzero = counts[counts > 0]
    if len(nonzero) and nonzero.max() >= LOG_COUNT_RATIO * nonzero.min():
        axes.set_yscale("log")
    if threshold is not None and edges[0] <= threshold <= edges[-1]:
        axes.axvline(threshold, color=BAD_COLOR, linestyle="--", linewidth=1.5)
        axes.annotate(
            f"threshold {threshold:.4g}",
            xy=(threshold, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -4),
            textcoords="offset points",
            va="top",
            color=BAD_COLOR,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
    axes.set_title(f"{title}\n{note}", fontsize=10, loc="left")
    axes.set_xlabel("segment score" + (" (log scale)" if log_x else ""))
    axes.set_ylabel("segments" + (" (log scale)" if axes.get_yscale() == "log" else ""))
    return figure


def label_bars(title: str, groups: Mapping[str, Mapping[str, int]], order: Sequence[str]) -> Figure:
    """Horizontal stacked bars: per group, the segments labelled good, bad and blank.

    Each bar ends with the share of its labelled segments that are bad.

    Args:
        title: plot title.
        groups: group name -> label (``good``, ``bad``, ``blank``) -> segments.
        order: group names from top to bottom.
    """
    height = 1.2 + 0.32 * max(len(order), 1)
    figure = Figure(figsize=(7.5, height), layout="constrained")
    axes = figure.add_subplot()
    positions = np.arange(len(order))
    left = np.zeros(len(order))
    for label, color in LABEL_COLORS.items():
        values = np.array([groups[name].get(label, 0) for name in order], dtype=float)
        axes.barh(positions, values, left=left, color=color, label=label, height=0.7)
        left += values
    for position, name in zip(positions, order, strict=True):
        axes.text(left[position], position, " " + _bad_share(groups[name]), va="center", fontsize=7)
    axes.set_yticks(positions, [_shorten(name) for name in order], fontsize=8)
    axes.invert_yaxis()
    axes.margins(x=0.12)
    axes.set_xlabel("segments")
    axes.set_title(title, fontsize=10, loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return figure


def _bad_share(labels: Mapping[str, int]) -> str:
    labelled = labels.get("good", 0) + labels.get("bad", 0)
    return f"{labels.get('bad', 0) / labelled:.0%} bad" if labelled else ""


def _shorten(name: str, width: int = 48) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
