"""Read human answers from a long CSV: one row per question, group and option.

Columns: question_id, question, options, attribute, group, option, count, and optionally
ordinal (without it the question is nominal). Repeated rows add up.
"""

from __future__ import annotations

import csv
import json
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from personahub.analysis.survey import OVERALL, GroupKey, Question, Survey, add_counts
from personahub.core.errors import InputFileError
from personahub.core.input_files import open_text_input
from personahub.personas.demographics import attribute_keys

__all__ = ["COLUMNS", "column_name", "read_long_csv"]

COLUMNS = ("question_id", "question", "options", "attribute", "group", "option", "count")
REFUSAL_LABELS = {"refused"}


def column_name(text: str) -> str:
    """Return a header cell as a column name: stripped, in Unicode's compatibility form (NFKC), so a
    full-width ＳＥＸ is the demographic SEX, not a question."""
    return unicodedata.normalize("NFKC", text).strip()


@dataclass
class _Row:
    line: int
    cells: dict[str, str]


def _items(cell: str, what: str, name: str, line: int) -> list[str]:
    """Return a pipe-separated list or a JSON array of strings or numbers, as strings."""
    text = cell.strip()
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(name, line, f"{what}: invalid JSON array ({exc.msg})") from None
        if not isinstance(values, list) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in values):
            raise InputFileError(name, line, f"{what}: expected an array of strings or numbers")
        return [str(v).strip() for v in values]
    return [part.strip() for part in text.split("|")] if text else []


def _question(row: _Row, has_ordinal: bool, name: str) -> Question:
    cells, line = row.cells, row.line
    qid = cells["question_id"].strip()
    options = _items(cells["options"], "options", name, line)
    if not qid or not options or any(not o for o in options):
        raise InputFileError(name, line, "question_id and every option must be non-empty")
    positions = _items(cells.get("ordinal", ""), "ordinal", name, line) if has_ordinal else []
    if positions:
        try:
            ordinal = tuple(float(p) for p in positions)
        except ValueError:
            raise InputFileError(name, line, f"ordinal {cells['ordinal']!r}: not numbers") from None
        if not all(math.isfinite(v) for v in ordinal):
            raise InputFileError(name, line, "ordinal values must be finite")
    else:
        refusals = [o for o in options if o.casefold() in REFUSAL_LABELS]
        options = [o for o in options if o not in refusals] + refusals
        ordinal = (1.0,) * (len(options) - len(refusals))
    try:
        return Question(qid, cells["question"].strip(), tuple(options), ordinal)
    except ValueError as exc:
        raise InputFileError(name, line, str(exc)) from None


def _group_key(row: _Row, name: str) -> GroupKey:
    attribute = row.cells["attribute"].strip()
    group = row.cells["group"].strip()
    if not attribute or not group:
        raise InputFileError(name, row.line, "attribute and group must be non-empty")
    if attribute.casefold() == OVERALL.casefold():
        return OVERALL, (OVERALL,)
    keys = attribute_keys(attribute)
    parts = len(keys) if keys else len([p for p in attribute.split("+") if p.strip()])
    labels = tuple(p.strip() for p in group.split(" / ")) if parts > 1 else (group,)
    if len(labels) != parts:
        raise InputFileError(name, row.line, f"attribute {attribute} crosses {parts} attributes: "
                                             f"group {group!r} must give {parts} labels joined by ' / '")
    return attribute, labels


def _rows(path: Path, name: str) -> tuple[list[_Row], bool]:
    rows: list[_Row] = []
    with open_text_input(path) as f:
        reader = csv.reader(f, strict=True)
        start = 1
        try:
            header = [column_name(h) for h in next(reader, [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise InputFileError(name, 1, f"missing column {', '.join(missing)} (a long survey "
                                              f"CSV has {', '.join(COLUMNS)}[, ordinal])")
            start = reader.line_num + 1
            for cells in reader:
                if any(c.strip() for c in cells):
                    if len(cells) != len(header):
                        raise InputFileError(name, start, f"expected {len(header)} fields, got {len(cells)}")
                    rows.append(_Row(start, dict(zip(header, cells, strict=True))))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputFileError(name, start, f"bad CSV ({exc})") from None
        except UnicodeDecodeError:
            raise InputFileError(name, None, "not UTF-8 text") from None
    if not rows:
        raise InputFileError(name, None, "no data rows")
    return rows, "ordinal" in header


def _count(row: _Row, name: str) -> float:
    text = row.cells["count"].strip()
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(name, row.line, f"count {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise InputFileError(name, row.line, f"count {text!r} must be a number >= 0")
    return value


def read_long_csv(path: str | Path) -> Survey:
    """Read a long survey CSV into a Survey."""
    name, path = str(path), Path(path)
    rows, has_ordinal = _rows(path, name)
    questions: dict[str, Question] = {}
    first_line: dict[str, int] = {}
    counts: dict[str, dict[GroupKey, list[float]]] = {}
    for row in rows:
        question = _question(row, has_ordinal, name)
        known = questions.setdefault(question.qid, question)
        first_line.setdefault(question.qid, row.line)
        if known != question:
            raise InputFileError(name, row.line, f"question {question.qid} differs from its row on "
                                                 f"line {first_line[question.qid]} (text, options "
                                                 "or ordinal)")
        key = _group_key(row, name)
        option = row.cells["option"].strip()  # a repeated option adds to its count
        add_counts(counts.setdefault(question.qid, {}), key, question, {option: _count(row, name)},
                   name, row.line, f"{question.qid}, {key[0]} {' / '.join(key[1])}")
    return Survey(questions, {q: {k: tuple(v) for k, v in g.items()} for q, g in counts.items()},
                  source=name)
