"""An evaluation's held-out split, with near-duplicate families kept on one side.

The items are a synthesis job's or those an outside file brought in (``evaluate --items``,
stored in ``eval_items``). Before the split, the items are grouped into near-duplicate families
on their own texts: MinHash LSH proposes candidate pairs and the exact Jaccard of the two items'
word sets (the word 1-grams dedup uses) decides, at a stated threshold. A family goes whole to
one side, so no pair at or above the threshold straddles train and test; the synthesis job's own
duplicate flags join families too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import duckdb
import numpy as np

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import insert_columns

#: the Jaccard at or above which two items are one family (the synthesis flags' threshold)
FAMILY_THRESHOLD = 0.9
#: the id prefix of an outside item set (``evaluate --items``): its items are in eval_items
ITEMS_PREFIX = "items-"
# each text is checked exactly against up to this many earlier texts of each LSH bucket; the
# offline engine's templated problems crowd buckets, where the default 2 missed family members
_BUCKET_PAIRS = 64


def eval_id_for(source: str, seed: int, test_share: float | None, test_n: int | None,
                threshold: float = FAMILY_THRESHOLD) -> str:
    """Return the split's id, a hash of its settings: the same settings give the same split id."""
    text = json.dumps({"job": source, "seed": seed, "test_share": test_share, "test_n": test_n,
                       "families": threshold}, sort_keys=True)
    return "split-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def is_outside(source: str) -> bool:
    """Whether a split's source is an outside item set rather than a synthesis job."""
    return source.startswith(ITEMS_PREFIX)


@dataclass(frozen=True)
class SplitSummary:
    """A split's counts: items, test and train items, and its near-duplicate families.

    Attributes:
        eval_id: the split's id.
        job_id: the synthesis job or outside item set it divides.
        items: every item, contaminated ones included.
        test: items on the test side.
        train: items on the train side.
        families: near-duplicate families (two items or more), each on one side.
        family_items: the items in those families.
        excluded: contaminated items, in neither side.
    """

    eval_id: str
    job_id: str
    items: int
    test: int
    train: int
    families: int
    family_items: int
    excluded: int = 0


class SourceItem(NamedTuple):
    """An item to split: its id, its text and the item a synthesis flag says it duplicates."""

    item_id: str
    text: str
    duplicate_of: str | None = None


def source_items(con: duckdb.DuckDBPyConnection, source: str) -> list[SourceItem]:
    """Return a synthesis job's or an outside item set's items, in item order."""
    if is_outside(source):
        sql = "SELECT item_id, text, NULL FROM eval_items WHERE source_id = ? ORDER BY item_id"
    else:
        sql = ("SELECT item_id, text, duplicate_of FROM v_items WHERE source = 'job' AND "
               "source_id = ? ORDER BY item_id")
    return [SourceItem(*row) for row in con.execute(sql, [source]).fetchall()]


def near_duplicate_pairs(texts: Sequence[str], threshold: float = FAMILY_THRESHOLD
                         ) -> np.ndarray:
    """Return the pairs of texts whose word sets have an exact Jaccard at or above threshold.

    Args:
        texts: the items' texts.
        threshold: the Jaccard at or above which two texts are one family.

    Returns:
        An (n, 2) array of text indices, earlier first (LSH bands chosen for recall propose the
        candidates; the exact Jaccard decides, so no pair below the threshold is returned).
    """
    from personahub.personas.minhash import MinHashConfig, sketch, verified_pairs

    if len(texts) < 2:
        return np.empty((0, 2), dtype=np.int64)
    config = MinHashConfig(threshold=threshold, max_bucket_pairs=_BUCKET_PAIRS)
    sigs, features = sketch(list(texts), config)
    return verified_pairs(sigs, features, config)


def families(items: Sequence[str], pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Each item's family: the smallest item id joined to it by a chain of pairs (union-find)."""
    parent = {item: item for item in items}

    def root(item: str) -> str:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in pairs:
        if a in parent and b in parent:
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return {item: root(item) for item in parent}


def split_summary(con: duckdb.DuckDBPyConnection, eval_id: str) -> SplitSummary | None:
    """Return a stored split's counts (None: no such split)."""
    row = con.execute(
        "SELECT count(*), count(*) FILTER (split = 'test'), count(*) FILTER (split = 'train'), "
        "count(*) FILTER (split = 'excluded'), any_value(job_id) FROM eval_splits "
        "WHERE eval_id = ?", [eval_id]).fetchone()
    if row is None or not row[0]:
        return None
    fam = con.execute(
        "SELECT count(*), coalesce(sum(n), 0) FROM (SELECT group_id, count(*) AS n FROM "
        "eval_splits WHERE eval_id = ? AND split <> 'excluded' GROUP BY group_id "
        "HAVING count(*) > 1)", [eval_id]).fetchone()
    assert fam is not None
    return SplitSummary(eval_id, str(row[4]), int(row[0]), int(row[1]), int(row[2]),
                        int(fam[0]), int(fam[1]), int(row[3]))


def split_job(con: duckdb.DuckDBPyConnection, job_id: str, *, test_share: float | None = None,
              test_n: int | None = None, seed: int = 0, eval_id: str | None = None,
              exclude: frozenset[str] = frozenset(),
              threshold: float = FAMILY_THRESHOLD) -> SplitSummary:
    """Hold out a seeded test split of a job's or an item set's items, families kept together.

    Give at most one of test_share or test_n; neither puts every item on the test side (an
    outside benchmark scored whole). Families are taken in a seeded hash order and go to the test
    side while they fit (a family too big is skipped), so the test side never exceeds its target.
    Excluded (contaminated) items go to neither side. A split already stored under the same id is
    read back instead.

    Args:
        con: the database.
        job_id: the synthesis job, or the outside item set's ``items-...`` id.
        test_share: the test side's share of the items left.
        test_n: the test side's size.
        seed: orders the families.
        eval_id: the split's id (default: from the settings).
        exclude: items in neither side.
        threshold: the Jaccard at or above which two items are one family.

    Returns:
        The split's counts.
    """
    if test_share is not None and test_n is not None:
        raise UsageError("evaluate: give exactly one of --test-share or --test-n")
    if test_share is not None and not 0 < test_share < 1:
        raise UsageError(f"--test-share must be between 0 and 1, got {test_share}")
    if test_n is not None and test_n < 1:
        raise UsageError(f"--test-n must be >= 1, got {test_n}")
    if not 0 < threshold < 1:
        raise UsageError(f"--family-threshold must be between 0 and 1, got {threshold}")
    eval_id = eval_id or eval_id_for(job_id, seed, test_share, test_n, threshold)
    stored = split_summary(con, eval_id)
    if stored is not None:
        return stored
    flag = "--items" if is_outside(job_id) else "--job"
    rows = source_items(con, job_id)
    if not rows:
        raise PersonahubError(f"{flag} {job_id}: no "
                              f"{'items' if is_outside(job_id) else 'synthesized items'}")
    kept = [row for row in rows if row.item_id not in exclude]
    excluded = sorted(row.item_id for row in rows if row.item_id in exclude)
    found = near_duplicate_pairs([row.text for row in kept], threshold)
    pairs = [(kept[a].item_id, kept[b].item_id) for a, b in found.tolist()]
    pairs += [(row.item_id, row.duplicate_of) for row in kept if row.duplicate_of is not None]
    group_of = families([row.item_id for row in kept], pairs)
    members: dict[str, list[str]] = {}
    for item, group in group_of.items():
        members.setdefault(group, []).append(item)
    target = (len(kept) if test_share is None and test_n is None
              else test_n if test_n is not None else round(float(test_share or 0) * len(kept)))
    whole = test_share is None and test_n is None
    if not 0 < target < len(kept) and not (whole and kept):
        raise PersonahubError(f"{flag} {job_id}: a test split of {target} of the {len(kept)} "
                              f"items left{' after decontamination' if excluded else ''} would "
                              "leave one split empty")
    order = sorted(members, key=lambda g: (hashlib.md5(f"{seed}:{g}".encode()).hexdigest(), g))
    test: set[str] = set()
    for group in order:
        if len(test) + len(members[group]) <= target:
            test.update(members[group])
        if len(test) == target:
            break
    ordered = sorted(group_of) + excluded
    insert_columns(con, "eval_splits", {
        "eval_id": [eval_id] * len(ordered), "job_id": [job_id] * len(ordered),
        "item_id": ordered,
        "split": ["test" if item in test else "train" for item in sorted(group_of)]
        + ["excluded"] * len(excluded),
        "group_id": [group_of[item] for item in sorted(group_of)] + excluded,
        "seed": [seed] * len(ordered)})
    big = [len(m) for m in members.values() if len(m) > 1]
    return SplitSummary(eval_id, job_id, len(rows), len(test), len(kept) - len(test), len(big),
                        sum(big), len(excluded))


class HeldOutItem(NamedTuple):
    """A test item to solve: its id and its problem text."""

    item_id: str
    text: str


def held_out_items(con: duckdb.DuckDBPyConnection, eval_id: str) -> list[HeldOutItem]:
    """Return the test split's items, in item order."""
    return [HeldOutItem(*row) for row in con.execute(
        "SELECT s.item_id, coalesce(i.text, e.text) FROM eval_splits s "
        "LEFT JOIN v_items i ON i.source = 'job' AND i.source_id = s.job_id AND "
        "i.item_id = s.item_id LEFT JOIN eval_items e ON e.source_id = s.job_id AND "
        "e.item_id = s.item_id WHERE s.eval_id = ? AND s.split = 'test' ORDER BY s.item_id",
        [eval_id]).fetchall()]


def reference_answers(con: duckdb.DuckDBPyConnection, eval_id: str) -> dict[str, str]:
    """Return the reference answers an outside item set gives its test items (items without none)."""
    return {str(item): str(ref) for item, ref in con.execute(
        "SELECT s.item_id, e.reference FROM eval_splits s JOIN eval_items e ON "
        "e.source_id = s.job_id AND e.item_id = s.item_id WHERE s.eval_id = ? AND "
        "s.split = 'test' AND e.reference IS NOT NULL ORDER BY s.item_id", [eval_id]).fetchall()}
