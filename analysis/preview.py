"""Sampled generated rows to look at: end-of-job previews, the report's samples and outliers, show.

Rows are picked by a stable hash of their ids, non-duplicates first, so the same database
previews the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from personahub.core.errors import PersonahubError, UsageError
from personahub.personas.store import CORPUS_PERSONAS, child_personas, persona_text
from personahub.sim.store import archetype_lines

DEFAULT_PREVIEW = 3  # rows per kind in an end-of-job preview
REPORT_SAMPLES = 5  # rows per kind in a report's samples section
OUTLIERS = 3  # rows per list in a report's outliers section


@dataclass(frozen=True)
class Sample:
    """One preview row: what went in and what came out, with the ids show takes."""

    kind: str
    item_id: str
    source_id: str
    source: str
    output: str
    is_duplicate: bool = False
    duplicate_of: str | None = None

    @property
    def length(self) -> int:
        """The output's length in characters."""
        return len(self.output)


@dataclass(frozen=True)
class Preview:
    """The sampled rows of one job or run, with what their two text columns hold."""

    title: str
    source_label: str  # "persona", "text", "parent persona"
    output_label: str  # "output", "persona", "related persona"
    samples: list[Sample] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        """Return the kinds in the order their rows come."""
        return list(dict.fromkeys(s.kind for s in self.samples))


# each source yields (kind, item_id, source_id, source, output, is_duplicate, duplicate_of) for
# one owner id (the one ? parameter).
_ITEMS = """
SELECT task, item_id, persona_id, coalesce(persona, '(persona not in the hub)'), text,
       coalesce(is_duplicate, false), duplicate_of
FROM v_items WHERE source = '{source}' AND source_id = ?
"""
_JOB_ITEMS = _ITEMS.format(source="job")
_RUN_EMISSIONS = _ITEMS.format(source="run")


def _picked(con: duckdb.DuckDBPyConnection, source: str, owner: str, per_kind: int) -> list[Sample]:
    rows = con.execute(f"""
        SELECT * EXCLUDE (pick) FROM (
            SELECT *, row_number() OVER (PARTITION BY kind ORDER BY dup, md5(item_id)) AS pick
            FROM ({source}) AS s(kind, item_id, source_id, source, output, dup, duplicate_of)
        ) WHERE pick <= ? ORDER BY kind, pick""", [owner, per_kind]).fetchall()
    return [Sample(*row) for row in rows]


def _totals(con: duckdb.DuckDBPyConnection, source: str, owner: str) -> dict[str, int]:
    rows = con.execute(f"SELECT kind, count(*) FROM ({source}) AS s(kind, a, b, c, d, e, f) "
                       "GROUP BY 1 ORDER BY 1", [owner]).fetchall()
    return {kind: n for kind, n in rows}


def _preview(con: duckdb.DuckDBPyConnection, source: str, owner: str, per_kind: int, title: str,
             labels: tuple[str, str]) -> Preview:
    if per_kind < 1:
        return Preview(title, *labels)
    return Preview(title, *labels, _picked(con, source, owner, per_kind), _totals(con, source, owner))


def job_preview(con: duckdb.DuckDBPyConnection, job_id: str, per_kind: int = DEFAULT_PREVIEW) -> Preview:
    """Return a synthesis job's items: persona to item, per task."""
    return _preview(con, _JOB_ITEMS, job_id, per_kind, f"job {job_id}", ("persona", "output"))


def run_preview(con: duckdb.DuckDBPyConnection, run_id: str, per_kind: int = DEFAULT_PREVIEW) -> Preview:
    """Return a run's emissions: persona to emission, per emission kind."""
    return _preview(con, _RUN_EMISSIONS, run_id, per_kind, f"run {run_id}", ("persona", "output"))


def corpus_preview(con: duckdb.DuckDBPyConnection, corpus: str,
                   per_kind: int = DEFAULT_PREVIEW) -> Preview:
    """Return a text-to-persona corpus's personas: text to persona, per relation."""
    return _preview(con, CORPUS_PERSONAS, corpus, per_kind, f"corpus {corpus}", ("text", "persona"))


def expansion_preview(con: duckdb.DuckDBPyConnection, expansion_id: str,
                      per_kind: int = DEFAULT_PREVIEW) -> Preview:
    """Return an expansion's new personas: parent to persona, per hop."""
    # deferred: the expansion module is loaded only when one is shown
    from personahub.personas.expand import EXPANSION_CHILDREN

    return _preview(con, child_personas(EXPANSION_CHILDREN), expansion_id, per_kind,
                    f"expansion {expansion_id}", ("parent persona", "related persona"))


@dataclass(frozen=True)
class Outliers:
    """What a report's outliers section lists for a job or run."""

    longest: list[Sample]
    shortest: list[Sample]
    duplicates: list[Sample]


def outliers(con: duckdb.DuckDBPyConnection, *, job_id: str | None = None,
             run_id: str | None = None, count: int = OUTLIERS) -> Outliers:
    """Return the longest and shortest outputs, and near-duplicates with what they repeat."""
    source, owner = (_JOB_ITEMS, job_id) if job_id is not None else (_RUN_EMISSIONS, run_id)
    if owner is None:
        return Outliers([], [], [])

    def take(order: str, where: str = "true") -> list[Sample]:
        rows = con.execute(
            f"SELECT * FROM ({source}) AS s(kind, item_id, source_id, source, output, dup, "
            f"duplicate_of) WHERE {where} ORDER BY {order}, item_id LIMIT ?",
            [owner, count]).fetchall()
        return [Sample(*row) for row in rows]

    return Outliers(take("length(output) DESC"), take("length(output)"),
                    take("md5(item_id)", where="dup"))


def clip(text: str, limit: int) -> str:
    """Return the text on one line, cut at a word boundary to at most limit characters with an ellipsis."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word boundary not too far back
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"



@dataclass(frozen=True)
class Shown:
    """One item, emission or persona as show prints it: what, id, and labelled fields in order."""

    what: str  # "synthesis item", "emission", "persona", "run"
    ident: str
    fields: list[tuple[str, object]]


_LOOKUPS: list[tuple[str, str, str]] = [
    ("synthesis item", "synth_items", "item_id"),
    ("emission", "emissions", "emission_id"),
    ("persona", "personas", "persona_id"),
    ("run", "runs", "run_id"),
]
MIN_PREFIX = 6  # shorter prefixes match too much


def _find(con: duckdb.DuckDBPyConnection, ident: str) -> tuple[str, str, str]:
    """Find (what, table, full id) of an exact id, else a unique id prefix."""
    for what, table, column in _LOOKUPS:
        if con.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [ident]).fetchone():
            return what, table, ident
    found: list[tuple[str, str, str]] = []
    if len(ident) >= MIN_PREFIX:
        for what, table, column in _LOOKUPS:
            rows = con.execute(f"SELECT {column} FROM {table} WHERE starts_with({column}, ?) "
                               "LIMIT 3", [ident]).fetchall()
            found += [(what, table, row[0]) for row in rows]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(f"{what} {full}" for what, _, full in found)
        raise PersonahubError(f"show {ident}: several ids start with it ({names}); give more of it")
    raise PersonahubError(f"show {ident}: no synthesis item, emission, persona or run has this "
                          "id (ids look like s0123456789abcde for an item, p0123456789abcde for "
                          "a persona, RUN_ID:STEP:AGENT for an emission)")


def show(con: duckdb.DuckDBPyConnection, ident: str) -> Shown:
    """Return the item, emission or persona an id or unique id prefix names."""
    ident = ident.strip()
    if not ident:
        raise UsageError("show: give an item, emission or persona id")
    what, table, full = _find(con, ident)
    column = dict((t, c) for _, t, c in _LOOKUPS)[table]
    cursor = con.execute(f"SELECT * FROM {table} WHERE {column} = ?", [full])
    names = [d[0] for d in cursor.description]
    row = dict(zip(names, cursor.fetchone() or (), strict=True))
    fields = [(name, value) for name, value in row.items()
              if name != column and value is not None and name != "seq"]
    persona_id = row.get("persona_id") if table != "personas" else None
    if persona_id is not None:
        text = persona_text(con, persona_id)
        fields.insert(0, ("persona", text if text is not None else "(not in the hub)"))
    if table == "personas":
        made = con.execute(
            "SELECT count(*) FILTER (WHERE source = 'job'), count(*) FILTER (WHERE source = 'run') "
            "FROM v_items WHERE persona_id = ?", [full]).fetchone()
        items, emissions = made if made else (0, 0)
        fields.append(("made", f"{items} synthesis items, {emissions} emissions"))
    if table == "runs":  # a run with archetypes: its grouping, largest first
        grouping = archetype_lines(con, full)
        if grouping:
            fields.append(("archetypes", "\n".join(grouping)))
    return Shown(what, full, fields)
