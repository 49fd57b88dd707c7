"""Progress of an API job: a bar per phase, as a notebook widget where one can be drawn.

Jobs report through the progress hook the CLI's display uses too; here tqdm draws it. Bars
show by default in a notebook or on a terminal, not when output goes to a file.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressHook = Callable[[str, int, "int | None"], None]
#: True/False for bars, None for the default, or a hook of your own
ProgressSetting = bool | ProgressHook | None


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel."""
    return "ipykernel" in sys.modules


def _widgets() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def _bar_class() -> Any:
    """Return tqdm's notebook bar where ipywidgets can draw it, else its text bar, without the
    warning tqdm.auto would print in the cell."""
    if in_notebook() and _widgets():
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


def quiet_tqdm_auto() -> None:
    """Import tqdm.auto once without its "IProgress not found" warning, which libraries a job
    loads would otherwise print in a notebook without ipywidgets."""
    if in_notebook() and not _widgets() and "tqdm.auto" not in sys.modules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tqdm.auto  # noqa: F401


class Bars:
    """A progress hook drawing one bar per phase."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = _bar_class()(total=total, desc=phase, leave=True,
                                                  file=sys.stderr, dynamic_ncols=True)
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def shows_by_default() -> bool:
    """Bars unless asked: in a notebook, or when stderr is a terminal."""
    return in_notebook() or sys.stderr.isatty()


@contextmanager
def progress_hook(setting: ProgressSetting) -> Iterator[ProgressHook | None]:
    """Return the hook for a progress setting; bars are closed however the job ends."""
    quiet_tqdm_auto()
    if callable(setting):
        yield setting
        return
    if not (shows_by_default() if setting is None else setting):
        yield None
        return
    bars = Bars()
    try:
        yield bars
    finally:
        bars.close()
