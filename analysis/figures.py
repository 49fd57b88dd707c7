"""Figures for the reports, drawn without pyplot.

A report never touches matplotlib's global backend or pyplot's figure list, so building one
(or a run's card, which imports the report) in a notebook leaves its inline plots working.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
             **kwargs: Any) -> tuple[Figure, Any]:
    """Return a figure and its axes, as ``plt.subplots`` does, without registering the figure.

    Args:
        nrows: rows of axes.
        ncols: columns of axes.
        figsize: the figure's size in inches.
        **kwargs: passed to ``Figure.subplots`` (``squeeze``, ``gridspec_kw``, ...).

    Returns:
        The figure, and its axes (one, or an array as ``squeeze`` says).
    """
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)
