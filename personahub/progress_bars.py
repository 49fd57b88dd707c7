"""Progress of an API job: a bar per phase, as a notebook widget where one can be drawn.

The Python API's jobs report through the one progress hook ``(phase, done, total)`` the CLI's
display listens to too. Here ``tqdm.auto`` draws it: a widget in Jupyter when ``ipywidgets`` is
installed, else tqdm's text bar on stderr (which a notebook shows as the cell's stream). By
default bars are shown in a notebook (an IPython kernel is loaded) or when stderr is a terminal,
and not in scripts whose output goes to a file; ``progress=False`` turns them off, ``True`` on,
and a callable is used as the hook itself.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

ProgressHook = Callable[[str, int, "int | None"], None]
#: what the API's ``progress=`` takes
ProgressSetting = bool | ProgressHook | None


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel."""
    return "ipykernel" in sys.modules


def _widgets() -> bool:
    return importlib.util.find_spec("ipywidgets") is not None


def _bar_class() -> Any:
    """tqdm's notebook bar where ipywidgets can draw it, else its text bar (tqdm.auto would
    fall back too, but with a warning in the cell)."""
    if in_notebook() and _widgets():
        from tqdm.auto import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm


def quiet_tqdm_auto() -> None:
    """Import ``tqdm.auto`` once without its "IProgress not found" warning: libraries a job
    loads (huggingface_hub, ...) import it, and in a notebook without ipywidgets the warning
    would land in the cell's output."""
    if in_notebook() and not _widgets() and "tqdm.auto" not in sys.modules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tqdm.auto  # noqa: F401


class Bars:
    """A progress hook drawing one bar per phase (``step``, ``synthesis``, ``judge``, ...)."""

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
    """The hook a job reports to for ``setting`` (None: ``shows_by_default``); bars are closed
    when the job ends, however it ends."""
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
