"""Read human answers with one row per respondent (CSV or Parquet) into a Survey's group counts.

Columns are told apart by name: known demographics, an optional weight (rescaled to a mean of
1), identifiers, and questions. A codebook beside the file gives the questions' options; without
one each question is nominal over the values seen.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from personahub.analysis.survey import OVERALL, GroupKey, Question, Survey, match_option
from personahub.analysis.survey_csv import REFUSAL_LABELS, _question, _Row, column_name
from personahub.core.errors import InputFileError
from personahub.core.input_files import check_input_file, open_text_input
from personahub.personas.demographics import attribute_keys

__all__ = ["Respondents", "codebook_path", "read_respondent_rows", "read_respondents"]

IDENTIFIERS = {"id", "respondent", "respondent_id", "caseid", "qkey"}
CODEBOOK_COLUMNS = ("question_id", "question", "options")


def codebook_path(path: Path) -> Path:
    """Where a respondent file's codebook is looked for: STEM.questions.csv beside it."""
    return path.with_name(f"{path.stem}.questions.csv")


def _records(path: Path, name: str, setting: str | None = None
             ) -> tuple[list[str], Iterator[tuple[int | None, int, list[str]]]]:
    """Return the header (names in NFKC) and (line or None, row number, cells as text) of a CSV or
    Parquet file; setting: the flag that named it, for a file that is none."""
    if path.suffix.casefold() in (".parquet", ".pq"):
        check_input_file(path, setting)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many kinds: all mean "not a readable Parquet"
            raise InputFileError(name, None, f"not a readable Parquet file ({type(exc).__name__})"
                                 ) from None
        header = [column_name(str(c)) for c in frame.columns]
        cells = frame.astype(object).where(pd.notna(frame), "")
        return header, ((None, i + 1, [_text(v) for v in row])
                        for i, row in enumerate(cells.itertuples(index=False, name=None)))
    f = open_text_input(path, setting)  # closed by the generator, or below on a bad header
    try:
        reader = csv.reader(f, strict=True)
        header = [column_name(h) for h in next(reader, [])]
    except (csv.Error, UnicodeDecodeError) as exc:
        f.close()
        raise InputFileError(name, 1, f"bad CSV header ({exc})") from None

    def rows() -> Iterator[tuple[int | None, int, list[str]]]:
        start, number = reader.line_num + 1, 0
        with f:
            try:
                for cells in reader:
                    if any(c.strip() for c in cells):
                        number += 1
                        if len(cells) != len(header):
                            raise InputFileError(name, start, f"expected {len(header)} fields, "
                                                              f"got {len(cells)}")
                        yield start, number, [c.strip() for c in cells]
                    start = reader.line_num + 1
            except csv.Error as exc:
                raise InputFileError(name, start, f"bad CSV ({exc})") from None
            except UnicodeDecodeError:
                raise InputFileError(name, None, "not UTF-8 text") from None
    return header, rows()


def _text(value: object) -> str:
    """Return a Parquet cell as an option label: whole floats without ".0" (a column of codes)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _codebook(path: Path) -> dict[str, Question] | None:
    book = codebook_path(path)
    if not book.exists():
        return None
    name = str(book)
    questions: dict[str, Question] = {}
    with open_text_input(book) as f:
        reader = csv.DictReader(f, strict=True)
        header = [column_name(h) for h in reader.fieldnames or []]
        missing = [c for c in CODEBOOK_COLUMNS if c not in header]
        if missing:
            raise InputFileError(name, 1, f"missing column {', '.join(missing)} (a codebook has "
                                          f"{', '.join(CODEBOOK_COLUMNS)}[, ordinal])")
        try:
            for row in reader:
                cells = {column_name(k): (v or "") for k, v in row.items() if k is not None}
                cells["question_id"] = column_name(cells.get("question_id", ""))
                question = _question(_Row(reader.line_num, cells), "ordinal" in header, name)
                if question.qid in questions:
                    raise InputFileError(name, reader.line_num,
                                         f"question {question.qid} is listed twice")
                questions[question.qid] = question
        except csv.Error as exc:
            raise InputFileError(name, reader.line_num, f"bad CSV ({exc})") from None
    if not questions:
        raise InputFileError(name, None, "no questions")
    return questions


def _weight_column(header: list[str], weight: str | None, name: str) -> str | None:
    if weight is not None:
        if weight not in header:
            raise InputFileError(name, 1, f"no weight column {weight!r} (columns: "
                                          f"{', '.join(header)})")
        return weight
    found = [c for c in header if c.casefold() == "weight" or c.casefold().startswith("weight_")]
    if len(found) > 1:
        raise InputFileError(name, 1, f"several weight columns ({', '.join(found)}): name one")
    return found[0] if found else None


def _weight(cell: str, column: str, name: str, line: int | None, number: int) -> float:
    where = f"column {column}" if line is not None else f"row {number}, column {column}"
    try:
        value = float(cell)
    except ValueError:
        raise InputFileError(name, line, f"{where}: weight {cell!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise InputFileError(name, line, f"{where}: weight {cell!r} must be a number >= 0")
    return value


def _nominal(qid: str, values: set[str]) -> Question:
    refusals = sorted(v for v in values if v.casefold() in REFUSAL_LABELS)
    substantive = sorted(values - set(refusals))
    if not substantive:
        substantive = refusals[:1]  # only refusals: one "option" so the question exists
        refusals = refusals[1:]
    return Question(qid, qid, tuple(substantive + refusals), (1.0,) * len(substantive))


@dataclass(frozen=True)
class Respondents:
    """A respondent-level file as read: questions, demographic and weight columns, and one
    (weight, groups, answers) per respondent.
    """

    questions: dict[str, Question]
    demographics: tuple[str, ...]
    weight_column: str | None
    rows: tuple[tuple[float, dict[str, str], dict[str, str]], ...]
    skipped: dict[str, str]


def read_respondent_rows(path: str | Path, *, weight: str | None = None,
                         setting: str | None = None) -> Respondents:
    """Read a respondent-level file without aggregating it.

    Args:
        path: a CSV or Parquet file, one row per respondent.
        weight: the weight column (default: one named weight or weight_*, if any).
        setting: the flag that named the file (--humans), for the message when it is none.

    Returns:
        The questions, the demographic columns, and each respondent's row.
    """
    name, path = str(path), Path(path)
    header, records = _records(path, name, setting)
    if len(set(header)) != len(header):
        raise InputFileError(name, 1, "a column name is given twice")
    weight_column = _weight_column(header, weight, name)
    demographics = [c for c in header if c != weight_column and attribute_keys(c) is not None
                    and len(attribute_keys(c) or ()) == 1]
    book = _codebook(path)
    rest = [c for c in header
            if c != weight_column and c not in demographics and c.casefold() not in IDENTIFIERS]
    skipped: dict[str, str] = {}
    if book is not None:
        absent = [q for q in book if q not in header]
        if absent:
            raise InputFileError(name, 1, f"no column for codebook question {', '.join(absent)} "
                                          f"({codebook_path(path)})")
        skipped = {c: "not a question of the codebook" for c in rest if c not in book}
        rest = [c for c in rest if c in book]
    if not rest:
        raise InputFileError(name, 1, "no question column (every column is a demographic, an "
                                      "identifier or the weight)")
    index = {c: i for i, c in enumerate(header)}
    rows: list[tuple[float, dict[str, str], dict[str, str]]] = []  # weight, groups, answers
    for line, number, cells in records:
        w = 1.0 if weight_column is None else _weight(cells[index[weight_column]], weight_column,
                                                      name, line, number)
        answers = {q: cells[index[q]] for q in rest if cells[index[q]]}
        for qid, value in answers.items():
            if book is not None and match_option(book[qid], value) is None:
                where = f"column {qid}" if line is not None else f"row {number}, column {qid}"
                raise InputFileError(name, line, f"{where}: {value!r} is not an option of "
                                                 f"question {qid} ({codebook_path(path).name})")
        rows.append((w, {c: cells[index[c]] for c in demographics if cells[index[c]]}, answers))
    if not rows:
        raise InputFileError(name, None, "no data rows")
    if sum(w for w, _, _ in rows) <= 0:
        raise InputFileError(name, None, f"every weight in column {weight_column} is 0")
    questions = dict(book) if book is not None else {
        q: _nominal(q, {a[q] for _, _, a in rows if q in a}) for q in rest
        if any(q in a for _, _, a in rows)}
    return Respondents(questions, tuple(demographics), weight_column, tuple(rows), skipped)


def read_respondents(path: str | Path, *, weight: str | None = None) -> Survey:
    """Read a respondent-level file into a Survey of weighted counts per question and group."""
    read = read_respondent_rows(path, weight=weight)
    questions, rows, skipped = read.questions, read.rows, dict(read.skipped)
    scale = len(rows) / sum(w for w, _, _ in rows)
    counts: dict[str, dict[GroupKey, list[float]]] = {}
    for w, groups, answers in rows:
        for qid, value in answers.items():
            question = questions[qid]
            option = match_option(question, value)
            assert option is not None
            per = counts.setdefault(qid, {})
            keys: list[GroupKey] = [(OVERALL, (OVERALL,)),
                                    *((c, (g,)) for c, g in groups.items())]
            for key in keys:
                per.setdefault(key, [0.0] * len(question.options))[option] += w * scale
    for qid in questions:
        if qid not in counts:
            skipped[qid] = "no respondent answered it"
    weighting = (f"weighted by column {read.weight_column} (rescaled to a mean of 1)"
                 if read.weight_column is not None else "unweighted (no weight column): each "
                 "respondent counts 1")
    return Survey({q: questions[q] for q in counts},
                  {q: {k: tuple(v) for k, v in g.items()} for q, g in counts.items()},
                  source=str(path), skipped=skipped, weighting=weighting)
