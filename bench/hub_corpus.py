"""A templated persona hub of any size with planted near-duplicates at known Jaccard.

Every text is a pure function of its line index (splitmix64 of the index picks its words), so a
hub of 30M lines is written in one streamed pass and any line's text is made again on demand, to
score dedup without holding the hub. One line in ten is a copy of an earlier original, changed
one of three ways:

* ``swap``: two words swapped (Jaccard 1);
* ``append``: one new word added (Jaccard k/(k+1), about 0.95);
* ``renumber``: the resident number, a word no other text has, replaced (Jaccard (k-1)/(k+1),
  about 0.90: on either side of the 0.9 threshold, by the text's words).

The exact Jaccard of every copy with its source is computed as it is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAITS = ["patient", "curious", "blunt", "meticulous", "cheerful", "stubborn", "shy", "restless",
          "quiet", "witty", "anxious", "generous"]
ROLES = ["nurse", "baker", "ferry pilot", "librarian", "welder", "beekeeper", "data engineer",
         "farmer", "pharmacist", "teacher", "plumber", "florist", "barista", "mechanic",
         "translator", "carpenter", "midwife", "geologist", "bus driver", "archivist"]
PLACES = ["Lisbon", "Accra", "Osaka", "Leeds", "Quito", "Tartu", "Perth", "Cork", "Pune", "Oslo",
          "Recife", "Hanoi", "Tromso", "Lagos", "Cusco", "Graz", "Mysore", "Hobart"]
HOBBIES = ["chess", "birdwatching", "sourdough", "cycling", "poetry", "robotics", "gardening",
           "jazz", "hiking", "pottery", "astronomy", "rowing", "knitting", "film photography"]
KINDS = ("original", "swap", "append", "renumber")
COPY_SHARE = 0.1
_WORD = re.compile(r"\w+")
_M64 = (1 << 64) - 1


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 of each value: the index's random bits."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _pick(bits: np.ndarray, words: list[str], shift: int) -> list[str]:
    table = np.array(words, dtype=object)
    return table[((bits >> np.uint64(shift)) % np.uint64(len(words))).astype(np.int64)].tolist()


def originals(index: np.ndarray, seed: int) -> list[str]:
    """Return the original texts of the given line indexes."""
    bits = _mix(index.astype(np.uint64) ^ np.uint64(seed * 0x632BE59BD9B4E019 & _M64))
    trait, role, place = _pick(bits, TRAITS, 0), _pick(bits, ROLES, 8), _pick(bits, PLACES, 16)
    h1, h2 = _pick(bits, HOBBIES, 24), _pick(bits, HOBBIES, 32)
    age = (19 + (bits >> np.uint64(40)) % np.uint64(62)).tolist()
    return [f"A {t} {r} from {p}, aged {a}, who spends weekends on {x} and {y} "
            f"(resident no. {i})."
            for t, r, p, a, x, y, i in zip(trait, role, place, age, h1, h2, index.tolist(),
                                           strict=True)]


@dataclass(frozen=True)
class Lines:
    """A block of the hub: each line's kind (index into KINDS) and source line (-1: itself)."""

    start: int
    kind: np.ndarray
    source: np.ndarray


def plan(start: int, stop: int, seed: int) -> Lines:
    """Return which lines of [start, stop) are copies, of which kind and of which earlier line.

    A copy's source is an original, so its Jaccard is the truth to score against.
    """
    index = np.arange(start, stop, dtype=np.uint64)
    bits = _mix(index ^ np.uint64((seed + 1) * 0xD1B54A32D192ED03 & _M64))
    copy = ((bits & np.uint64(0xFFFF)) < np.uint64(int(COPY_SHARE * 0x10000))) & (index > 0)
    kind = np.where(copy, 1 + ((bits >> np.uint64(16)) % np.uint64(3)).astype(np.int64), 0)
    source = np.full(index.size, -1, dtype=np.int64)
    if copy.any():
        # a random earlier line, moved to the nearest original at or before it
        wanted = ((bits[copy] >> np.uint64(20)) % index[copy]).astype(np.int64)
        source[copy] = _original_at_or_before(wanted, seed)
    return Lines(start, kind.astype(np.int8), source)


def _original_at_or_before(lines: np.ndarray, seed: int) -> np.ndarray:
    out = lines.copy()
    pending = np.arange(lines.size)
    while pending.size:
        at = out[pending]
        bits = _mix(at.astype(np.uint64) ^ np.uint64((seed + 1) * 0xD1B54A32D192ED03 & _M64))
        copy = ((bits & np.uint64(0xFFFF)) < np.uint64(int(COPY_SHARE * 0x10000))) & (at > 0)
        out[pending[copy]] -= 1
        pending = pending[copy]
    return out


def texts(lines: Lines, seed: int) -> list[str]:
    """Return the block's texts: originals, and copies made from their source's original."""
    n = lines.kind.size
    index = np.arange(lines.start, lines.start + n, dtype=np.int64)
    out = originals(index, seed)
    copies = np.flatnonzero(lines.kind > 0)
    if copies.size:
        sources = originals(lines.source[copies], seed)
        for at, kind, text in zip(copies.tolist(), lines.kind[copies].tolist(), sources,
                                  strict=True):
            out[at] = changed(text, int(kind), lines.start + at)
    return out


def changed(text: str, kind: int, line: int) -> str:
    """Return a copy of text changed the kind's way."""
    words = text.split(" ")
    if kind == 1:
        a, b = 1 + line % 3, 7 + line % 4
        words[a], words[b] = words[b], words[a]
        return " ".join(words)
    if kind == 2:
        return text + " again"
    return re.sub(r"no\. \d+\)", f"no. {line}x)", text)


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard of two texts' lower-cased word sets (stage 1's 1-grams)."""
    sa, sb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    return len(sa & sb) / max(1, len(sa | sb))


def blocks(n: int, seed: int, rows: int = 200_000) -> Iterator[tuple[Lines, list[str]]]:
    """Yield the hub's blocks of lines with their texts."""
    for start in range(0, n, rows):
        lines = plan(start, min(n, start + rows), seed)
        yield lines, texts(lines, seed)


def write(path: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write the hub as Persona Hub JSONL; return the copies' lines, sources and exact Jaccard."""
    copy_lines, copy_sources, copy_jaccard = [], [], []
    tmp = path.with_name(path.name + ".part")
    with tmp.open("w", encoding="utf-8") as out:
        for lines, block in blocks(n, seed):
            out.write("".join(json.dumps({"persona": t}) + "\n" for t in block))
            copies = np.flatnonzero(lines.kind > 0)
            sources = originals(lines.source[copies], seed)
            copy_lines.append(lines.start + copies)
            copy_sources.append(lines.source[copies])
            copy_jaccard.append(np.array([jaccard(block[c], s) for c, s in
                                          zip(copies.tolist(), sources, strict=True)]))
    tmp.replace(path)
    return (np.concatenate(copy_lines), np.concatenate(copy_sources),
            np.concatenate(copy_jaccard))


def text_of(lines: np.ndarray, seed: int) -> list[str]:
    """Return the texts of any lines of the hub (copies made again from their source)."""
    out: list[str] = []
    for line in lines.tolist():
        block = plan(line, line + 1, seed)
        out.extend(texts(block, seed))
    return out
