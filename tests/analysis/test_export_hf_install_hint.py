"""``export --format hf`` without the ``[hf]`` extra: one line saying what to install, nothing
written (the layout itself is tested with the extra, tests/analysis/test_export_hf.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pytest

from personahub.analysis.export_hf import INSTALL_HINT, export_hf
from personahub.core.errors import PersonahubError


def test_without_datasets_the_hf_export_names_the_extra(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed: import fails
    out = tmp_path / "hf"
    with duckdb.connect() as con, pytest.raises(PersonahubError) as error:
        export_hf(con, out, job="j1")
    assert str(error.value) == INSTALL_HINT and "personahub[hf]" in INSTALL_HINT
    assert not out.exists()
