"""Read an OpinionQA wave folder (tatsu-lab/opinions_qa, data/human_resp/WAVE/).

Questions come from info.csv, counts from ATTRIBUTE_data.json (NONE_data.json, a copy of
POLPARTY's, is skipped). List literals are parsed, never executed.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

from personahub.analysis.survey import GroupKey, Question, Survey, add_counts
from personahub.core.errors import InputFileError
from personahub.core.input_files import check_input_file, open_text_input, read_input_bytes

__all__ = ["read_opinionqa"]

INFO = "info.csv"
DATA_SUFFIX = "_data.json"
SKIPPED_ATTRIBUTES = {"NONE"}
_NOT_GROUPS = {"MC_options", "question_text", "marginals"}
_INFO_COLUMNS = ("key", "question", "references", "option_ordinal")


def _literal(text: str, what: str, name: str, line: int) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise InputFileError(name, line, f"{what} is not a list literal: {text[:60]!r}") from None


def _question(row: dict[str, str], name: str, line: int) -> Question:
    key = row["key"].strip()
    if not key:
        raise InputFileError(name, line, "empty key")
    options = _literal(row["references"], "references", name, line)
    ordinal = _literal(row["option_ordinal"], "option_ordinal", name, line)
    if not isinstance(options, list | tuple) or not all(isinstance(o, str) for o in options):
        raise InputFileError(name, line, f"{key}: references is not a list of strings")
    if not isinstance(ordinal, list | tuple) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in ordinal):
        raise InputFileError(name, line, f"{key}: option_ordinal is not a list of numbers")
    try:
        return Question(key, row["question"].strip(), tuple(options), tuple(float(v) for v in ordinal))
    except ValueError as exc:
        raise InputFileError(name, line, str(exc)) from None


def _read_info(path: Path) -> tuple[dict[str, Question], dict[str, str]]:
    """Read the questions of info.csv, and the keys skipped with why (W43 lists IDIMPORT_W43 five times
    with one count map).
    """
    name = str(path)
    check_input_file(path, hint="an OpinionQA wave folder has info.csv")
    questions: dict[str, Question] = {}
    skipped: dict[str, str] = {}
    with open_text_input(path) as f:
        reader = csv.DictReader(f, strict=True)
        missing = [c for c in _INFO_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFileError(name, 1, f"missing column {', '.join(missing)}")
        start = 2
        try:
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise InputFileError(name, start, "wrong number of fields")
                question = _question(row, name, start)
                known = questions.get(question.qid)
                if known is not None and known != question:
                    skipped[question.qid] = (f"listed more than once in {INFO} with different "
                                             "texts or options; its data cannot tell them apart")
                questions.setdefault(question.qid, question)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputFileError(name, start, f"bad CSV ({exc})") from None
    for qid in skipped:
        del questions[qid]
    if not questions:
        raise InputFileError(name, None, "no questions")
    return questions, skipped


def _group_counts(attribute: str, label: str, value: object, question: Question,
                  into: dict[GroupKey, list[float]], name: str) -> None:
    """One group of a question: a map option -> count, or (crossed) subgroup -> that map."""
    where = f"{question.qid}, group {label!r}"
    if not isinstance(value, dict):
        raise InputFileError(name, None, f"{where}: expected an object of option: count")
    nested = [v for v in value.values() if isinstance(v, dict)]
    if nested and len(nested) != len(value):
        raise InputFileError(name, None, f"{where}: mixes counts and subgroups")
    if not nested:
        add_counts(into, (attribute, (label,)), question, value, name, None, where)
        return
    for sub, answers in value.items():
        if answers:  # the release has empty subgroups ("Mixed Race": {})
            add_counts(into, (attribute, (label, sub)), question, answers, name, None,
                       f"{where}/{sub!r}")


def _read_data(path: Path, attribute: str, questions: dict[str, Question],
               counts: dict[str, dict[GroupKey, list[float]]], skipped: dict[str, str]) -> None:
    name = str(path)
    try:
        data = json.loads(read_input_bytes(path).decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(name, exc.lineno, f"invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise InputFileError(name, None, "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise InputFileError(name, None, "expected an object of question id: groups")
    for qid, groups in data.items():
        if qid in skipped:
            continue
        if qid not in questions:
            raise InputFileError(name, None, f"question {qid} is not in {INFO}")
        if not isinstance(groups, dict):
            raise InputFileError(name, None, f"{qid}: expected an object of group: counts")
        into = counts.setdefault(qid, {})
        for label, value in groups.items():
            if label not in _NOT_GROUPS:
                _group_counts(attribute, label, value, questions[qid], into, name)


def read_opinionqa(folder: str | Path) -> Survey:
    """Read a wave folder into a Survey."""
    folder = Path(folder)
    questions, skipped = _read_info(folder / INFO)
    files = sorted(folder.glob("*" + DATA_SUFFIX))
    if not files:
        raise InputFileError(str(folder), None, f"no <ATTRIBUTE>{DATA_SUFFIX} files beside {INFO}")
    counts: dict[str, dict[GroupKey, list[float]]] = {}
    for path in files:
        attribute = path.name[: -len(DATA_SUFFIX)]
        if attribute not in SKIPPED_ATTRIBUTES:
            _read_data(path, attribute, questions, counts, skipped)
    for qid in questions:
        if qid not in counts:  # info.csv lists every question of the wave; the files a subset
            skipped[qid] = "no answers in the data files"
    ordered = {qid: {k: tuple(v) for k, v in counts[qid].items()}
               for qid in questions if qid in counts}
    return Survey({qid: questions[qid] for qid in ordered}, ordered, source=str(folder),
                  skipped=skipped)
