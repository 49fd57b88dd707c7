"""Outside files an evaluation reads: the items it evaluates (``--items``) and the benchmarks it
checks them against (``--against``).

A file is JSONL, CSV or Parquet (by its extension), or a Hugging Face ``datasets`` folder (the
``[hf]`` extra; without it a folder is refused in one line). Each is known by the SHA-256 of its
bytes (of a folder, of every file in it), so an edited file is a new item set or a new check,
never a stale one. A file must be a regular one within the table-file cap (core/input_files).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from personahub.core.errors import InputFileError, PersonahubError, UsageError
from personahub.core.input_files import check_input_file, read_input_bytes
from personahub.personas.decontaminate import TEXT_COLUMNS

#: the answer column taken when --answer-column is not given (none when the file has none)
ANSWER_COLUMNS = ("answer",)
#: --answer-column's value that takes no reference answers even where the file has a column
NO_ANSWERS = "-"
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
HF_HINT = "a datasets folder needs the datasets package: pip install 'personahub[hf]'"
# GSM8K writes its reasoning, then "#### 72": the reference is what follows the last mark
_FINAL_MARK = "####"


def _read_bytes(path: Path, flag: str) -> bytes:
    """Read a named input file's bytes: a regular file within the table-file cap, refused in one line
    otherwise (core/input_files)."""
    return read_input_bytes(path, flag)


def _file_digest(path: Path, flag: str) -> bytes:
    """Return the SHA-256 of one file of a datasets folder, read in chunks (an Arrow shard can be
    larger than a table file may be: datasets maps it, nothing here holds it whole)."""
    digest = hashlib.sha256()
    with open(check_input_file(path, flag, max_bytes=None), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _folder_files(folder: Path) -> list[Path]:
    """Return a datasets folder's files, in a fixed order (hidden files left out)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def content_sha256(path: str | Path, flag: str) -> str:
    """Return the SHA-256 of a file's bytes, or of a folder's files (their names and bytes).

    Args:
        path: the file or datasets folder.
        flag: the option that named it, for messages.

    Returns:
        The digest as 64 hex digits.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in _folder_files(path):
            digest.update(file.relative_to(path).as_posix().encode() + b"\x00")
            digest.update(_file_digest(file, flag))
        return digest.hexdigest()
    digest.update(_read_bytes(_checked(path, flag), flag))
    return digest.hexdigest()


def _checked(path: Path, flag: str) -> Path:
    """Check for a regular file with a known extension (a folder is a datasets folder, read apart)."""
    check_input_file(path, flag)
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{flag} {path}: unknown format {path.suffix or '(no extension)'!r} "
                         "(use .jsonl, .csv, .parquet or a datasets folder)")
    return path


@dataclass(frozen=True)
class Table:
    """A file's rows as dictionaries, its columns in order, and its content hash."""

    path: str
    sha256: str
    columns: list[str]
    rows: list[dict[str, object]] = field(repr=False)


def read_table(path: str | Path, flag: str, *, sha256: str | None = None) -> Table:
    """Read a JSONL, CSV or Parquet file, or a datasets folder, into rows.

    Args:
        path: the file or folder.
        flag: the option that named it, for messages.
        sha256: the content hash it was known by; a file that no longer has it is refused.

    Returns:
        The rows, with the hash of what was read.
    """
    path = Path(path)
    if path.is_dir():
        found = content_sha256(path, flag)
        columns, rows = _folder_rows(path, flag)
    else:
        data = _read_bytes(_checked(path, flag), flag)
        found = hashlib.sha256(data).hexdigest()
        columns, rows = _file_rows(path, data, flag)
    if sha256 is not None and found != sha256:
        raise PersonahubError(f"{flag} {path}: the file changed since the evaluation was set up; "
                              "run the command again to evaluate its new contents")
    return Table(str(path), found, columns, rows)


def _file_rows(path: Path, data: bytes, flag: str) -> tuple[list[str], list[dict[str, object]]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputFileError(f"{flag} {path}", None, f"not readable as Parquet ({exc})") \
                from None
        return list(table.column_names), table.to_pylist()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{flag} {path}", None, f"not UTF-8 text ({exc.reason})") from None
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [dict(row) for row in reader]
        return list(reader.fieldnames or []), rows
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(f"{flag} {path}", number, f"not valid JSON ({exc.msg})") \
                from None
        if not isinstance(row, dict):
            raise InputFileError(f"{flag} {path}", number, "not a JSON object")
        rows.append(row)
    return list(dict.fromkeys(k for row in rows for k in row)), rows


def _folder_rows(folder: Path, flag: str) -> tuple[list[str], list[dict[str, object]]]:
    """Return a datasets folder's rows: saved with save_to_disk, or in the Hub's layout (one split)."""
    try:
        import datasets
    except ImportError:
        raise PersonahubError(f"{flag} {folder}: {HF_HINT}") from None
    saved = (folder / "state.json").exists() or (folder / "dataset_dict.json").exists()
    try:
        if saved:
            loaded = datasets.load_from_disk(str(folder))
        else:  # the Hub's layout: its Arrow cache in a folder of its own, gone once read
            with tempfile.TemporaryDirectory(prefix="personahub-items-") as cache:
                loaded = datasets.load_dataset(str(folder), cache_dir=cache, keep_in_memory=True)
    except (FileNotFoundError, ValueError) as exc:
        raise InputFileError(f"{flag} {folder}", None, f"not a datasets folder ({exc})") \
            from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if len(splits) != 1:
            where = (f"{folder}/{splits[0]}" if saved
                     else f"the split's Parquet file under {folder}/data")
            raise UsageError(f"{flag} {folder}: holds the splits {', '.join(splits)}; name one "
                             f"(e.g. {where})")
        loaded = loaded[splits[0]]
    return list(loaded.column_names), loaded.to_list()


def _column(table: Table, wanted: str | None, default: Sequence[str], flag: str,
            option: str) -> str | None:
    """Return the column asked for, else the first default present (None when there is none)."""
    if wanted is not None:
        if wanted not in table.columns:
            raise UsageError(f"{flag} {table.path}: no column {wanted!r}; its columns are "
                             f"{', '.join(table.columns) or '(none)'} (choose with {option})")
        return wanted
    return next((name for name in default if name in table.columns), None)


def final_answer(value: object) -> str | None:
    """Return a reference answer as text: after GSM8K's "####" mark when it has one (None: no answer)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if _FINAL_MARK in text:
        text = text.rsplit(_FINAL_MARK, 1)[1].strip()
    return text or None


@dataclass(frozen=True)
class OutsideItems:
    """The items an item file gives: each with its file row, question and reference answer.

    Attributes:
        path: the file as named.
        sha256: its content hash.
        question_column: the column read as the question.
        answer_column: the column read as the reference answer (None: the file gives none).
        items: (row, question, reference or None), in file order (rows counted from 0).
        rows: the rows read.
        left_out: rows without a question, counted (the row numbers of the first few kept).
    """

    path: str
    sha256: str
    question_column: str
    answer_column: str | None
    items: list[tuple[int, str, str | None]] = field(repr=False)
    rows: int
    left_out: list[int] = field(default_factory=list)

    @property
    def with_reference(self) -> int:
        """Items that carry a reference answer."""
        return sum(ref is not None for _, _, ref in self.items)


def read_items(path: str | Path, *, question: str | None = None, answer: str | None = None,
               sha256: str | None = None, flag: str = "--items") -> OutsideItems:
    """Read an item file's questions and, where it has them, reference answers.

    Args:
        path: a JSONL, CSV or Parquet file, or a datasets folder.
        question: the question column (default: the first of TEXT_COLUMNS present).
        answer: the reference answer column (default: "answer" when present; NO_ANSWERS for
            none). A value holding GSM8K's "#### 72" gives "72".
        sha256: the content hash the file must still have.
        flag: the option that named the file.

    Returns:
        The items; a row with an empty question is left out and counted.
    """
    table = read_table(path, flag, sha256=sha256)
    q_column = _column(table, question, TEXT_COLUMNS, flag, "--question-column")
    if q_column is None:
        raise UsageError(f"{flag} {table.path}: no question column {' / '.join(TEXT_COLUMNS)}; "
                         f"its columns are {', '.join(table.columns) or '(none)'} (choose one "
                         "with --question-column)")
    a_column = None if answer == NO_ANSWERS else _column(table, answer, ANSWER_COLUMNS, flag,
                                                         "--answer-column")
    items, left_out = [], []
    for row_number, row in enumerate(table.rows):
        text = row.get(q_column)
        text = str(text).strip() if isinstance(text, str | int | float) and \
            not isinstance(text, bool) else ""
        if not text:
            left_out.append(row_number)
            continue
        items.append((row_number, text,
                      final_answer(row.get(a_column)) if a_column is not None else None))
    if not items:
        raise UsageError(f"{flag} {table.path}: no row has a question in column {q_column!r}")
    return OutsideItems(table.path, table.sha256, q_column, a_column, items, len(table.rows),
                        left_out)


def benchmark_texts(path: str | Path, *, sha256: str | None = None,
                    flag: str = "--against") -> list[str]:
    """Return a benchmark's texts in file order (the first of TEXT_COLUMNS; a missing value is "")."""
    table = read_table(path, flag, sha256=sha256)
    if not table.rows and not table.columns:  # a file's content, not the flag: exit 1
        raise InputFileError(f"{flag} {table.path}", None,
                             "is empty; give a benchmark file with a text column")
    column = _column(table, None, TEXT_COLUMNS, flag, "")
    if column is None:
        raise InputFileError(f"{flag} {table.path}", None,
                             f"no text column {' / '.join(TEXT_COLUMNS)}; its columns are "
                             f"{', '.join(table.columns) or '(none)'}")
    return [v if isinstance(v := row.get(column), str) else "" for row in table.rows]
