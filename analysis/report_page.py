"""The HTML opening of the calibration and experiment reports, in one place so they look alike."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from personahub.core.outputs import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLE = ("<style>body{font-family:sans-serif;max-width:62em;margin:auto;padding:0 1em}"
         "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
         "img{max-width:100%}</style>")


def page_head(title: str, facts: Sequence[tuple[str, str]],
              images: Sequence[tuple[str, str, str]]) -> list[str]:
    """Return the page's opening HTML, escaped: title, facts table, and each (heading, image or "", note)."""
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             STYLE + "</head><body>", f"<h1>{esc(title)}</h1>",
             "<table class='facts'>"
             + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
             + "</table>"]
    for heading, image, note in images:
        parts += [f"<h2>{esc(heading)}</h2>", f"<p>{esc(note)}</p>"]
        if image:
            parts.append(f"<img src='{esc(image)}' alt='{esc(heading)}'>")
    return parts


def save_figure(fig: Figure, path: Path) -> None:
    """Write a figure as a PNG atomically and close it."""
    import matplotlib.pyplot as plt  # the caller chose the backend (Agg) before importing it

    fig.tight_layout()
    try:
        with atomic_file(path, overwrite=False, binary=True) as f:
            fig.savefig(f, format="png", dpi=90)
    finally:
        plt.close(fig)
