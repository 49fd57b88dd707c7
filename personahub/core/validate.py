"""Shared checks of what a user gives: flag and scenario values, and the files they name, refused
before anything is recorded. Every float is finite, since nan passes every comparison.
"""

from __future__ import annotations

import codecs
import gzip
import math
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.input_files import MAX_TEXT_FILE_BYTES, read_input_bytes

MAX_SEED = 2**63 - 1
MAX_TOKENS = 1_000_000
MAX_ID_CHARS = 200  # an id a user chooses: a name, not a text
# Nemotron's longest persona texts are under 5,000 characters; 20,000 refuses a book
MAX_PERSONA_CHARS = 20_000
# real records nest two or three levels; Python's parser gives up near 1,000
MAX_JSON_DEPTH = 64
_SNIFF_BYTES = 8192  # a NUL byte marks a binary file (as git and grep decide)
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"


def check_int(value: object, setting: str, *, low: int | None = None,
              high: int | None = None) -> int:
    """Return the value as an int within bounds (a bool, a float or a string is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{setting} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            bound = f">= {low}"
        elif low is None:
            bound = f"<= {high}"
        else:
            bound = f"within {low}..{high}"
        raise UsageError(f"{setting} must be an integer {bound}, got {value}")
    return value


def check_id(value: object, setting: str) -> str:
    """Check an id a user chooses (an experiment's): a non-empty string without a path separator, a
    control character, or a name a path gives a meaning to ("." and "..")."""
    if not isinstance(value, str):
        raise UsageError(f"{setting} must be a string, got {value!r}")
    if not value.strip():
        raise UsageError(f"{setting}: give a non-empty id")
    if "/" in value or "\\" in value:
        raise UsageError(f"{setting} {value!r}: an id holds no path separator (/ or \\)")
    if value in (".", "..") or any(not ch.isprintable() for ch in value):
        raise UsageError(f"{setting} {value!r}: an id is printable text, not . or ..")
    if len(value) > MAX_ID_CHARS:
        raise UsageError(f"{setting}: an id has at most {MAX_ID_CHARS} characters, got "
                         f"{len(value)}")
    return value


def check_seed(value: object, setting: str = "--seed") -> int:
    """Check a seed: an int that numpy takes and a BIGINT stores."""
    return check_int(value, setting, low=0, high=MAX_SEED)


def check_number(value: object, setting: str, *, low: float | None = None,
                 high: float | None = None, above: float | None = None) -> float:
    """Return the value as a finite float within bounds (inclusive, or exclusive below)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{setting} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{setting} must be a finite number, got {value!r}")
    if low is not None and value < low:
        raise UsageError(f"{setting} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise UsageError(f"{setting} must be <= {high}, got {value}")
    if above is not None and value <= above:
        raise UsageError(f"{setting} must be > {above}, got {value}")
    return float(value)


def check_optional_number(value: object, setting: str, **bounds: float) -> float | None:
    return None if value is None else check_number(value, setting, **bounds)


def check_weights(values: Iterable[float], setting: str, count: int) -> tuple[float, ...]:
    """Relative weights: finite numbers >= 0, not all zero."""
    weights = tuple(values)
    if len(weights) != count:
        raise UsageError(f"{setting} must hold one weight per kind ({count}), got {len(weights)}")
    for i, weight in enumerate(weights):
        check_number(weight, f"{setting}[{i}]", low=0)
    if not sum(weights) > 0:
        raise UsageError(f"{setting} must not be all zero")
    return weights


def json_depth(value: object, limit: int = MAX_JSON_DEPTH) -> int:
    """Return the nesting depth of a JSON value, counted up to a limit without recursion."""
    depth = 0
    level: list[object] = [value]
    while depth <= limit:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        depth += 1
        level = [child for item in containers
                 for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def too_deep(value: object, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why a value nests too deeply to keep, or None."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    if not any(isinstance(item, dict | list) for item in items):
        return None
    if json_depth(value, limit) > limit:
        return f"nested deeper than {limit} levels"
    return None


def persona_text_problem(text: str) -> str | None:
    """Why an imported persona text cannot be kept (size or a NUL), or None."""
    if len(text) > MAX_PERSONA_CHARS:
        return (f"the persona text has {len(text):,} characters; a persona may have at most "
                f"{MAX_PERSONA_CHARS:,}")
    if "\x00" in text:
        return "the persona text holds a NUL character (binary data, not text)"
    return None


def _file_error(setting: str, path: Path, reason: str) -> PersonahubError:
    return PersonahubError(f"{setting} {path}: {reason}")


def _utf8_problem(data: bytes, path: Path, setting: str, offset: int = 0,
                  line: int = 1) -> PersonahubError | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        at = line + data.count(b"\n", 0, exc.start)
        return _file_error(setting, path, f"line {at}: not UTF-8 text ({exc.reason} at byte "
                                          f"{offset + exc.start}); save it as UTF-8")
    return None


def _nul_problem(data: bytes, path: Path, setting: str, offset: int = 0) -> PersonahubError | None:
    at = data.find(b"\x00")
    if at < 0:
        return None
    return _file_error(setting, path, f"is a binary file (a NUL byte at byte {offset + at}), "
                                      "not text")


def read_text_file(path: str | Path, setting: str, *,
                   max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """Read a small text file whole as UTF-8, refused in one line when missing, not a regular file, too
    large, binary or not UTF-8.
    """
    path = Path(path)
    data = read_input_bytes(path, setting, max_bytes=max_bytes)
    problem = _nul_problem(data, path, setting) or _utf8_problem(data, path, setting)
    if problem is not None:
        raise problem
    return data.decode("utf-8").removeprefix("\ufeff")


@contextmanager
def _open_maybe_gzip(path: Path) -> Iterator[IO[bytes]]:
    with open(path, "rb") as raw:
        if raw.peek(2)[:2] == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield raw


def check_text_file(path: str | Path, setting: str, *, strict_utf8: bool = True) -> None:
    """Read a (possibly gzipped) text file end to end before a job starts on it, so damage does not stop
    the job half-way.
    """
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line = 0, 1
    try:
        with _open_maybe_gzip(path) as f:
            while chunk := f.read(_CHUNK):
                problem = _nul_problem(chunk, path, setting, offset)
                if problem is not None:
                    raise problem
                if strict_utf8:
                    pending = len(decoder.getstate()[0])
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError as exc:
                        at = max(0, exc.start - pending)
                        where = line + chunk.count(b"\n", 0, at)
                        raise _file_error(setting, path, f"line {where}: not UTF-8 text "
                                                         f"({exc.reason} at byte {offset + at}); "
                                                         "save it as UTF-8") from None
                offset += len(chunk)
                line += chunk.count(b"\n")
            if strict_utf8:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    raise _file_error(setting, path, "not UTF-8 text (it ends inside a "
                                                     "character)") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _file_error(setting, path, f"damaged or truncated gzip data ({exc})") from None
    except IsADirectoryError:
        raise _file_error(setting, path, "is a folder; give a file") from None
    except OSError as exc:
        raise _file_error(setting, path, str(exc.strerror or exc)) from None
