"""Streaming importers that turn persona files (Persona Hub, FinePersonas, tables) into Personas.

Files can be larger than memory, so every reader streams. Whole-file problems raise at once; a
bad record raises when reached, or is counted and skipped with skip_bad.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from personahub.core.errors import PersonaFileError, UsageError
from personahub.core.validate import MAX_JSON_DEPTH, persona_text_problem, too_deep
from personahub.personas.demographic_columns import TABLE_COLUMNS, DemographicProblem, normalise_row
from personahub.personas.record import Persona

__all__ = [
    "FORMATS",
    "ImportStats",
    "KeptRow",
    "container_of",
    "detect_format",
    "iter_rows",
    "iter_persona_batches",
    "iter_personas",
]

FORMATS: dict[str, str] = {
    "auto": "guess from the extension and, for JSONL, the keys of the first record",
    "personahub": 'Persona Hub persona.jsonl: one {"persona": ...} per line',
    "personahub-synth": 'Persona Hub synthesis file: "input persona" + "description" per line',
    "finepersonas": "FinePersonas rows: id, persona, labels (list or JSON-encoded list)",
    "attributes": "Nemotron-style CSV/Parquet table: persona column + typed attribute columns; "
                  "demographic columns are normalised (age -> age_group, state -> region, ...)",
    "jsonl": "JSON Lines with a text field (persona, then text); other fields become attributes",
    "csv": "CSV with a header and a text column (persona, then text); other cells are attributes",
    "parquet": "Parquet with a text column (persona, then text); other columns are attributes",
}

MAX_BAD_EXAMPLES = 5
# the source of the shipped seed personas, by whatever path they were read
SEED_SOURCE = "seed"
_JSONL_SUFFIXES = {".jsonl", ".json", ".ndjson"}
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_BATCH_ROWS = 1024
_DETECT_MAX_LINES = 1000
# which record fields may hold the persona text, in order of preference, per format
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "personahub": ("persona",),
    "personahub-synth": ("input persona",),
    "finepersonas": ("persona",),
    "attributes": ("persona",),
    "jsonl": ("persona", "text"),
    "csv": ("persona", "text"),
    "parquet": ("persona", "text"),
}
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"-?[0-9]+\.[0-9]+(?:[eE][-+]?[0-9]+)?")

Row = dict[str, Any]
# (line or row number, the record as read, the persona it became): a synthesis file's row
KeptRow = tuple[int, Row, Persona]


@dataclass
class ImportStats:
    """Counts filled in while iterating, so a CLI can report what an import did and skipped."""

    read: int = 0
    imported: int = 0
    bad: int = 0
    bad_examples: list[str] = field(default_factory=list)
    unmapped: Counter[str] = field(default_factory=Counter)

    def note_bad(self, error: PersonaFileError) -> None:
        """Count a skipped record and keep its message while fewer than five are kept."""
        self.bad += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append(str(error))


class _BadRecord(Exception):
    """One record is unusable; the message is the reason shown to the user."""


@contextmanager
def _open_binary(path: Path) -> Iterator[io.BufferedReader | gzip.GzipFile]:
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    with _open_binary(path) as binary:
        with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as text:
            yield text


def _strip_gz(path: Path) -> Path:
    return path.with_suffix("") if path.suffix.lower() == ".gz" else path


def _container_of(path: Path) -> str | None:
    suffix = _strip_gz(path).suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".parquet" and path.suffix.lower() != ".gz":
        return "parquet"
    return None


def _check_file(path: Path, name: str) -> None:
    """Fail early, without a line number, when there is no readable file at all."""
    if not path.exists():
        raise PersonaFileError(name, None, "file not found")
    if not path.is_file():
        raise PersonaFileError(name, None, "not a regular file")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_raw_decode = json.JSONDecoder().raw_decode
_LINE_ENDS = ("", "\n", "\r\n")


def _decode_json(text: str) -> object:
    """Parse JSON fast on the usual line; anything else goes through json.loads for its exact values
    and errors.
    """
    try:
        value, end = _raw_decode(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    else:
        if text[end:] in _LINE_ENDS:
            return value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _BadRecord(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # json's parser gives up near 1,000 nested levels
        raise _BadRecord(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


def _parse_json_line(raw: bytes, line_no: int) -> Row:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRecord(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if line_no == 1:
        text = text.removeprefix("\ufeff")
    value = _decode_json(text)
    if not isinstance(value, dict):
        raise _BadRecord(f"expected a JSON object, got {_json_type(value)}")
    # counting brackets is one C-level pass, so only such lines are measured
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        for key, field in value.items():
            problem = too_deep(field)
            if problem is not None:
                raise _BadRecord(f'field "{key}" is {problem}')
    return value


def _jsonl_records(path: Path) -> Generator[tuple[int, Row | _BadRecord]]:
    with _open_binary(path) as f:
        for line_no, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield line_no, _parse_json_line(raw, line_no)
            except _BadRecord as bad:
                yield line_no, bad


def _read_csv_header(path: Path, name: str) -> list[str]:
    with _open_text(path) as f:
        header = next(csv.reader(f), None)
    if not header:
        raise PersonaFileError(name, None, "no header row")
    duplicates = sorted({col for col in header if header.count(col) > 1})
    if duplicates:
        raise PersonaFileError(name, None, f"duplicate column {duplicates[0]!r} in header")
    return header


def _csv_records(path: Path) -> Iterator[tuple[int, Row | _BadRecord]]:
    """Yield (start line, cells or reason) for each data row.

    The reader is strict about quotes: a lenient one glues rows after a stray quote into one field.
    """
    with _open_text(path) as f:
        reader = csv.reader(f, strict=True)
        header = next(reader)
        next_start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                start, next_start = next_start, reader.line_num + 1
                yield start, _BadRecord(_quoting_problem(str(exc), start, reader.line_num))
                continue
            start, next_start = next_start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                yield start, _BadRecord(f"expected {len(header)} fields, got {len(cells)}")
            else:
                yield start, dict(zip(header, cells, strict=True))


def _quoting_problem(reason: str, start: int, end: int) -> str:
    """Return the reason shown for a row the strict CSV reader refused."""
    if reason == "unexpected end of data":
        return "bad quoting: a quote opened here is never closed (it runs to the end of the file)"
    span = f" (the quoted field runs on to line {end})" if end > start else ""
    return f"bad quoting: {reason}{span}"


def _open_parquet(path: Path, name: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise PersonaFileError(name, None, f"not a readable Parquet file ({exc})") from None


def _parquet_records(path: Path, name: str) -> Iterator[tuple[int, Row | _BadRecord]]:
    parquet = _open_parquet(path, name)
    row_no = 0
    try:
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                row_no += 1
                yield row_no, row
    finally:
        parquet.close()


def _first_json_keys(path: Path) -> set[str] | None:
    records = _jsonl_records(path)
    try:
        for _, record in islice(records, _DETECT_MAX_LINES):
            if isinstance(record, dict):
                return set(record)
    finally:
        records.close()
    return None


def _table_columns(path: Path, name: str, container: str) -> list[str]:
    if container == "csv":
        return _read_csv_header(path, name)
    parquet = _open_parquet(path, name)
    try:
        return list(parquet.schema_arrow.names)
    finally:
        parquet.close()


def _format_from_keys(keys: Iterable[str], plain: str) -> str:
    keys = set(keys)
    if "input persona" in keys:
        return "personahub-synth"
    if "persona" in keys and "labels" in keys:
        return "finepersonas"
    if plain == "jsonl" and keys == {"persona"}:
        return "personahub"
    if plain != "jsonl" and "persona" in keys and keys & TABLE_COLUMNS:
        return "attributes"
    return plain


class FormatNotKnown(PersonaFileError, UsageError):
    """The format is neither given nor told by the file name: a usage error (exit 2)."""


def detect_format(path: str | Path) -> str:
    """Guess the format from the extension and field names."""
    name = str(path)
    path = Path(path)
    _check_file(path, name)
    container = _container_of(path)
    if container is None:
        choices = ", ".join(f for f in FORMATS if f != "auto")
        raise FormatNotKnown(
            name, None, f"cannot tell the format from the extension; give --format, one of: "
            f"{choices}"
        )
    if container == "jsonl":
        keys = _first_json_keys(path)
        return "jsonl" if keys is None else _format_from_keys(keys, "jsonl")
    return _format_from_keys(_table_columns(path, name, container), container)


def _resolve_container(fmt: str, path: Path, name: str) -> str:
    if fmt in ("jsonl", "csv", "parquet"):
        return fmt
    container = _container_of(path)
    if container is not None:
        return container
    if fmt == "attributes":
        raise FormatNotKnown(name, None, "--format attributes needs a .csv or .parquet file")
    return "jsonl"


def _natural(value: str) -> int | float | str:
    """Give a CSV cell its natural type: "42" -> 42, "1.5" -> 1.5; "02139" stays a string."""
    if _INT_RE.fullmatch(value):
        return int(value)
    if _FLOAT_RE.fullmatch(value):
        return float(value)
    return value


def _take_text(row: Row, candidates: tuple[str, ...]) -> tuple[str, str]:
    for name in candidates:  # a loop, not next(genexpr): this runs once per record
        if name in row:
            break
    else:
        alternatives = "".join(f' (or "{c}")' for c in candidates[1:])
        raise _BadRecord(f'missing field "{candidates[0]}"{alternatives}')
    value = row[name]
    if value is None:
        raise _BadRecord(f'field "{name}" is null')
    if not isinstance(value, str):
        raise _BadRecord(f'field "{name}" is {_json_type(value)}, not a string')
    if not value or value.isspace():
        raise _BadRecord(f'field "{name}" is empty')
    problem = persona_text_problem(value)
    if problem is not None:
        raise _BadRecord(f'field "{name}": {problem}')
    return name, value


def _other_fields(row: Row, exclude: str) -> dict[str, object]:
    if len(row) == 1 and exclude in row:
        return {}
    return {key: value for key, value in row.items()
            if key != exclude and value is not None and value != ""}


def _natural_fields(row: Row, exclude: str) -> dict[str, object]:
    return {key: _natural(value) for key, value in row.items()
            if key != exclude and value is not None and value != ""}


def _parse_labels(value: object) -> list[object]:
    """FinePersonas stores labels as a list or as a JSON-encoded list string; accept both."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _BadRecord('field "labels" is neither a list nor a JSON-encoded list') from None
    if not isinstance(value, list):
        raise _BadRecord(f'field "labels" is {_json_type(value)}, not a list')
    return value


def _synth_attributes(row: Row) -> dict[str, object]:
    task = row.get("description")
    return {"task": task} if task not in (None, "") else {}


def _finepersonas_attributes(row: Row) -> dict[str, object]:
    attributes: dict[str, object] = {}
    if row.get("id") not in (None, ""):
        attributes["source_id"] = row["id"]
    if row.get("labels") not in (None, ""):
        attributes["labels"] = _parse_labels(row["labels"])
    return attributes


def _attribute_builder(fmt: str, container: str,
                       stats: ImportStats) -> Callable[[Row, str], dict[str, object]]:
    if fmt == "personahub-synth":
        return lambda row, _text_field: _synth_attributes(row)
    if fmt == "finepersonas":
        return lambda row, _text_field: _finepersonas_attributes(row)
    if fmt == "attributes":
        fields = _natural_fields if container == "csv" else _other_fields
        return lambda row, text_field: _demographics(fields(row, text_field), stats)
    return _other_fields


def _demographics(fields: dict[str, object], stats: ImportStats) -> dict[str, object]:
    """Normalise an attribute table's demographic fields, counting values that did not map."""
    try:
        attributes, unmapped = normalise_row(fields)
    except DemographicProblem as exc:
        raise _BadRecord(str(exc)) from None
    stats.unmapped.update(unmapped)
    return attributes


def _text_candidates(
    fmt: str, container: str, text_column: str | None, path: Path, name: str
) -> tuple[str, ...]:
    candidates = (text_column,) if text_column else _TEXT_FIELDS[fmt]
    if container == "jsonl":
        return candidates
    columns = _table_columns(path, name, container)
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        wanted = " or ".join(repr(c) for c in candidates)
        raise PersonaFileError(name, None, f"no column {wanted} (columns: {', '.join(columns)})")
    if container == "parquet":
        _check_parquet_text_type(path, name, found)
    return (found,)


def _check_parquet_text_type(path: Path, name: str, column: str) -> None:
    parquet = _open_parquet(path, name)
    try:
        column_type = parquet.schema_arrow.field(column).type
    finally:
        parquet.close()
    if pa.types.is_dictionary(column_type):
        column_type = column_type.value_type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise PersonaFileError(name, None, f"column {column!r} has type {column_type}, not string")


def _records(container: str, path: Path, name: str) -> Iterator[tuple[int, Row | _BadRecord]]:
    if container == "jsonl":
        return _jsonl_records(path)
    if container == "csv":
        return _csv_records(path)
    return _parquet_records(path, name)


def seed_file() -> Path:
    """Return the shipped seed persona file."""
    from importlib import resources

    return Path(str(resources.files("personahub.personas").joinpath("data/seed_personas.jsonl")))


def is_seed_file(path: Path) -> bool:
    """Whether the path is the shipped seed file, or a byte-for-byte copy of it."""
    seed = seed_file()
    try:
        if path.resolve() == seed.resolve():
            return True
        return path.is_file() and path.stat().st_size == seed.stat().st_size \
            and path.read_bytes() == seed.read_bytes()
    except OSError:
        return False


def iter_personas(
    path: str | Path,
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    skip_bad: bool = False,
    stats: ImportStats | None = None,
    source: str | None = None,
    synth_rows: list[KeptRow] | None = None,
) -> Iterator[Persona]:
    """Stream Personas from a file, each with its file and line or row as provenance.

    synth_rows receives each record of a Persona Hub synthesis file whole. The shipped seed file
    gets source "seed" by any path. Repeated texts are yielded too: dedup happens later.
    """
    name = str(path)
    path = Path(path)
    _check_file(path, name)
    if fmt not in FORMATS:
        raise PersonaFileError(name, None, f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    with _unreadable_as_file_error(name):  # a gzip stream damaged in its first bytes
        resolved = detect_format(path) if fmt == "auto" else fmt
        container = _resolve_container(resolved, path, name)
        candidates = _text_candidates(resolved, container, text_column, path, name)
    ref_word = "row" if container == "parquet" else "line"
    stats = ImportStats() if stats is None else stats
    return _generate(
        records=_records(container, path, name),
        candidates=candidates,
        attributes_of=_attribute_builder(resolved, container, stats),
        name=name,
        source=source if source is not None else SEED_SOURCE if is_seed_file(path) else name,
        ref_word=ref_word,
        skip_bad=skip_bad,
        stats=stats,
        kept=synth_rows if resolved == "personahub-synth" else None,
    )


def _generate(
    *,
    records: Iterator[tuple[int, Row | _BadRecord]],
    candidates: tuple[str, ...],
    attributes_of: Callable[[Row, str], dict[str, object]],
    name: str,
    source: str,
    ref_word: str,
    skip_bad: bool,
    stats: ImportStats,
    kept: list[KeptRow] | None = None,
) -> Iterator[Persona]:
    with _closing_stream(records, name) as stream:
        for number, record in stream:
            stats.read += 1
            try:
                if isinstance(record, _BadRecord):
                    raise record
                text_field, text = _take_text(record, candidates)
                attributes = attributes_of(record, text_field)
            except _BadRecord as bad:
                error = PersonaFileError(name, number, str(bad))
                if not skip_bad:
                    raise error from None
                stats.note_bad(error)
                continue
            stats.imported += 1
            persona = Persona(
                text=text, source=source, source_ref=f"{ref_word} {number}", attributes=attributes
            )
            if kept is not None:
                assert isinstance(record, dict)
                kept.append((number, record, persona))
            yield persona


_UNREADABLE = (OSError, EOFError, zlib.error, csv.Error, UnicodeDecodeError, pa.ArrowException)


@contextmanager
def _unreadable_as_file_error(name: str) -> Iterator[None]:
    """Turn unreadable bytes (bad gzip, CSV or UTF-8) into a one-line file error."""
    try:
        yield
    except _UNREADABLE as exc:
        raise PersonaFileError(name, None, f"unreadable data ({exc})") from None


@contextmanager
def _closing_stream(
    records: Iterator[tuple[int, Row | _BadRecord]], name: str
) -> Iterator[Iterator[tuple[int, Row | _BadRecord]]]:
    """Close the reader with the generator; damaged bytes break the stream, so they raise as file
    errors.
    """
    try:
        yield records
    except _UNREADABLE as exc:
        raise PersonaFileError(name, None, f"unreadable data ({exc})") from None
    finally:
        close = getattr(records, "close", None)
        if close is not None:
            close()


def iter_persona_batches(
    path: str | Path, *, batch_size: int = 10_000, **kwargs: Any
) -> Iterator[list[Persona]]:
    """Group streamed personas into lists, for bulk inserts."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    personas = iter_personas(path, **kwargs)
    return _batched(personas, batch_size)


def _batched(personas: Iterator[Persona], batch_size: int) -> Iterator[list[Persona]]:
    while batch := list(islice(personas, batch_size)):
        yield batch


def container_of(path: str | Path) -> str | None:
    """Return a file's layout by extension (.gz ignored): jsonl, csv, parquet or None."""
    return _container_of(Path(path))


def iter_rows(
    path: str | Path, *, skip_bad: bool = False, stats: ImportStats | None = None
) -> Iterator[tuple[int, Row]]:
    """Stream the raw records of a JSONL, CSV or Parquet file as (line or row number, fields)."""
    name = str(path)
    path = Path(path)
    _check_file(path, name)
    container = _container_of(path)
    if container is None:
        raise PersonaFileError(name, None, "not a .jsonl, .csv or .parquet file")
    if container == "csv":
        with _unreadable_as_file_error(name):
            _read_csv_header(path, name)
    return _generate_rows(_records(container, path, name), name, skip_bad,
                          ImportStats() if stats is None else stats)


def _generate_rows(records: Iterator[tuple[int, Row | _BadRecord]], name: str, skip_bad: bool,
                   stats: ImportStats) -> Iterator[tuple[int, Row]]:
    with _closing_stream(records, name) as stream:
        for number, record in stream:
            stats.read += 1
            if isinstance(record, _BadRecord):
                error = PersonaFileError(name, number, str(record))
                if not skip_bad:
                    raise error from None
                stats.note_bad(error)
                continue
            stats.imported += 1
            yield number, record
