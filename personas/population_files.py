"""The inputs of population sampling: marginal shares or a joint table, read strictly.

Marginals are a CSV (attribute, value and share, count or weight) or JSON; a joint table is a CSV
with a column per attribute and a weight. Canonical keys take their vocabulary. Every problem is
one error naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from personahub.core.errors import InputFileError
from personahub.core.input_files import check_input_file, open_text_input, read_input_bytes
from personahub.personas.demographics import canonical, canonical_key, values_of

__all__ = ["Joint", "Marginals", "read_joint", "read_marginals"]

WEIGHT_COLUMNS = ("share", "count", "weight")
SHARE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Marginals:
    """Each attribute's target shares (summing to 1), in file order."""

    shares: dict[str, dict[str, float]]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.shares)


@dataclass(frozen=True)
class Joint:
    """A joint table: the attributes, one tuple of values per cell, and its share (sum 1)."""

    keys: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    shares: tuple[float, ...]


def _key_of(name: str) -> str:
    return canonical_key(name) or name.strip()


def _value_of(key: str, raw: str, where: str, name: str, line: int | None) -> str:
    """Return a value as stored: the slug for a canonical key (an error if it spells none)."""
    text = str(raw).strip()
    if not text:
        raise InputFileError(name, line, f"{where}: empty value")
    try:
        allowed = values_of(key)
    except KeyError:
        return text
    slug = canonical(key, text)
    if slug is None:
        raise InputFileError(name, line, f"{where}: {text!r} is not a value of {key} "
                                         f"({', '.join(allowed)}, or a known spelling of one)")
    return slug


def _weight(raw: Any, column: str, name: str, line: int | None) -> float:
    """Return a non-negative, finite number from a share, count or weight cell."""
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InputFileError(name, line, f"{column} {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise InputFileError(name, line, f"{column} {raw!r} must be a number >= 0")
    return value


def _normalised(weights: dict[str, float], column: str, what: str, name: str) -> dict[str, float]:
    """Return weights as shares: share columns must already sum to 1; counts and weights are scaled."""
    total = sum(weights.values())
    if total <= 0:
        raise InputFileError(name, None, f"{what}: the {column}s sum to 0")
    if column == "share" and abs(total - 1) > SHARE_TOLERANCE:
        raise InputFileError(name, None, f"{what}: the shares sum to {total:.4g}, not 1 (give "
                                         "a count or weight column to have them scaled)")
    return {value: weight / total for value, weight in weights.items()}


def _check_file(path: Path, name: str) -> None:
    check_input_file(path)


Rows = list[tuple[int, dict[str, str]]]


def _csv_rows(path: Path, name: str, required: tuple[str, ...]) -> tuple[list[str], str, Rows]:
    with open_text_input(path) as f:
        reader = csv.reader(f, strict=True)
        try:
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise InputFileError(name, None, "no header row")
            missing = [c for c in required if c not in header]
            weight = next((c for c in WEIGHT_COLUMNS if c in header), None)
            if missing or weight is None:
                needs = [*missing, *([] if weight else ["share (or count, weight)"])]
                raise InputFileError(name, 1, f"missing column {', '.join(needs)} "
                                              f"(columns: {', '.join(header)})")
            rows = []
            start = reader.line_num + 1
            for cells in reader:
                if any(c.strip() for c in cells):
                    if len(cells) != len(header):
                        raise InputFileError(name, start, f"expected {len(header)} fields, got {len(cells)}")
                    rows.append((start, dict(zip(header, cells, strict=True))))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise InputFileError(name, reader.line_num, f"bad CSV ({exc})") from None
    if not rows:
        raise InputFileError(name, None, "no data rows")
    return header, weight, rows


def read_marginals(path: str | Path) -> Marginals:
    """Read a marginals file (CSV or JSON, by extension)."""
    name, path = str(path), Path(path)
    _check_file(path, name)
    if path.suffix.lower() == ".json":
        return _marginals_json(path, name)
    _, column, rows = _csv_rows(path, name, ("attribute", "value"))
    weights: dict[str, dict[str, float]] = {}
    for line, row in rows:
        key = _key_of(row["attribute"])
        if not key:
            raise InputFileError(name, line, "empty attribute")
        value = _value_of(key, row["value"], key, name, line)
        per_key = weights.setdefault(key, {})
        if value in per_key:
            raise InputFileError(name, line, f"{key}={value} is given twice")
        per_key[value] = _weight(row[column], column, name, line)
    return Marginals({key: _normalised(w, column, key, name) for key, w in weights.items()})


def _marginals_json(path: Path, name: str) -> Marginals:
    try:
        data = json.loads(read_input_bytes(path).decode("utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(name, getattr(exc, "lineno", None), f"invalid JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputFileError(name, None, 'expected an object {"attribute": {"value": share}}')
    shares: dict[str, dict[str, float]] = {}
    for attribute, values in data.items():
        key = _key_of(attribute)
        if not isinstance(values, dict) or not values:
            raise InputFileError(name, None, f"{attribute}: expected an object of value: share")
        if key in shares:
            raise InputFileError(name, None, f"{attribute}: {key} is given twice")
        per_key: dict[str, float] = {}
        for raw, share in values.items():
            value = _value_of(key, raw, key, name, None)
            if value in per_key:
                raise InputFileError(name, None, f"{key}={value} is given twice")
            per_key[value] = _weight(share, f"{key}={value}: share", name, None)
        shares[key] = _normalised(per_key, "share", key, name)
    return Marginals(shares)


def read_joint(path: str | Path) -> Joint:
    """Read a joint table (CSV)."""
    name, path = str(path), Path(path)
    _check_file(path, name)
    header, column, rows = _csv_rows(path, name, ())
    attributes = [h for h in header if h not in WEIGHT_COLUMNS]
    if not attributes:
        raise InputFileError(name, 1, "no attribute columns besides the weight column")
    keys = tuple(_key_of(a) for a in attributes)
    if len(set(keys)) != len(keys):
        raise InputFileError(name, 1, f"two columns name the same attribute ({', '.join(keys)})")
    cells: dict[tuple[str, ...], float] = {}
    for line, row in rows:
        cell = tuple(_value_of(key, row[a], key, name, line)
                     for key, a in zip(keys, attributes, strict=True))
        if cell in cells:
            raise InputFileError(name, line, f"the combination {', '.join(cell)} is given twice")
        cells[cell] = _weight(row[column], column, name, line)
    shares = _normalised({"\x1f".join(c): w for c, w in cells.items()}, column, "the joint", name)
    return Joint(keys, tuple(cells), tuple(shares.values()))
