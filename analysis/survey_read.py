"""Which reader a survey path takes: an OpinionQA wave folder or a long CSV."""

from __future__ import annotations

from pathlib import Path

from personahub.analysis.survey import Survey
from personahub.analysis.survey_csv import read_long_csv
from personahub.analysis.survey_opinionqa import read_opinionqa
from personahub.core.errors import InputFileError


def read_survey(path: str | Path) -> Survey:
    """Read human answers: an OpinionQA wave folder, or a long CSV (see ``survey_csv``)."""
    path = Path(path)
    if path.is_dir():
        return read_opinionqa(path)
    if path.is_file():
        return read_long_csv(path)
    raise InputFileError(str(path), None, "no such file or folder (give an OpinionQA wave folder "
                                          "or a long CSV)")
