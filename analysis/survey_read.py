"""Which reader a survey path takes: an OpinionQA folder, a long CSV, or a respondent-level file."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from personahub.analysis.survey import Survey
from personahub.analysis.survey_csv import read_long_csv
from personahub.analysis.survey_opinionqa import read_opinionqa
from personahub.analysis.survey_respondents import read_respondents
from personahub.core.errors import InputFileError
from personahub.core.input_files import check_input_file, open_text_input

_GIVE = "give an OpinionQA wave folder, a long CSV or a respondent-level CSV or Parquet"


def _is_long_csv(path: Path) -> bool:
    """Tell whether a CSV is the long layout (its header names question_id); any other is one row per
    respondent."""
    try:
        with open_text_input(path) as f:
            header = next(csv.reader(f), [])
    except (csv.Error, UnicodeDecodeError):
        return True  # the long reader says what is wrong, naming the line
    return "question_id" in (h.strip() for h in header)


def read_survey(path: str | Path) -> Survey:
    """Read human answers: an OpinionQA wave folder, a long CSV, or one row per respondent."""
    path = Path(path)
    if path.is_dir():
        return read_opinionqa(path)
    if not os.path.lexists(path):
        raise InputFileError(str(path), None, f"no such file or folder ({_GIVE})")
    check_input_file(path, hint=_GIVE)  # a device or a FIFO: one line, never read
    if path.suffix.casefold() in (".parquet", ".pq") or not _is_long_csv(path):
        return read_respondents(path)
    return read_long_csv(path)
