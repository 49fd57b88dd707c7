"""Each table family's SQL lives with the family (``docs/architecture.md``, "Who owns which
SQL"): a string literal that reads or writes a family's table (``FROM``, ``JOIN``, ``INTO``,
``UPDATE`` it), or a batch insert (``core.store.insert_rows`` / ``insert_columns``) given the
table by name, sits in one of the family's own modules, or in the schema's (``core/store.py``:
it makes every table).

The families and their owners (named modules, never a folder) are ``FAMILIES``: the shared
ones below, and each job kind's, which its row names (``tables`` and ``sql_owners`` in
``pipelines/labels.py``); nothing reaches across. Reads that join families go through the
analysis views (``analysis/views.sql``: a view is no family's table), the owners' functions, or
an owner's query text taken whole as a subquery (``personas.store.SURVIVORS``,
``personas.store.child_personas``). An f-string's table is followed through the module's string
constants; SQL that names its table through a variable is allowed only in the ``DYNAMIC``
modules, each with why.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from personahub.pipelines.labels import SHIPPED, ShippedKind
from tests.test_layers import ROOT, parsed, sources

SCHEMA = ROOT / "personahub" / "core" / "schema.sql"
# the module that makes every table
SCHEMA_MODULES = {"personahub/core/store.py"}
# queries shown to the user (a help text, the "Try:" lines after a run), never run by the module
EXAMPLES = {"personahub/cli/run.py", "personahub/cli/sql.py"}

# family -> (its tables, the modules that own their SQL): the families no job kind owns; each
# job kind's family is its row's tables and owners (``kind_families``)
SHARED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "jobs": (frozenset({"jobs", "schema_meta"}),
             frozenset({"personahub/core/jobs_store.py", "personahub/core/stored_views.py"})),
    "calls": (frozenset({"llm_calls", "llm_cache", "prices", "provider_batches"}),
              frozenset({"personahub/core/commit.py", "personahub/core/call_log.py",
                         "personahub/core/provider_batch_records.py", "personahub/models/cache.py"})),
    # sampling and carve compile the selection language (``--personas`` SQL conditions, carve's
    # KEY OP VALUE conditions and --stratify keys, run in personas/selection_sandbox.py's sandbox
    # where they are user text) into the one statement over ``personas`` each evaluates: like
    # ``personahub sql``, a query compiler over the hub, not a second store. Every other read or
    # write of the hub (their graph walks, fetches and gate counts too) is personas/store.py's, but
    # a whole file's import, staged and collapsed in bulk, which is personas/hub_import.py's.
    "persona hub": (frozenset({"personas", "relations", "persona_merges"}),
                    frozenset({"personas/store.py", "personas/sampling.py", "personas/carve.py",
                               "personas/hub_import.py"})),
    "imported texts": (frozenset({"persona_texts"}), frozenset({"personas/persona_texts.py"})),
    "rejected": (frozenset({"rejected"}), frozenset({"personas/quality.py"})),
}


def module_path(name: str) -> str:
    """The checkout-relative path of a dotted module (``personahub.sim.store`` ->
    ``sim/store.py``: the linked root folders resolved), as the scan names modules."""
    path = ROOT.joinpath(*name.split(".")).with_suffix(".py")
    return path.resolve().relative_to(ROOT.resolve()).as_posix()


def kind_families(rows: Mapping[str, ShippedKind]) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each kind's family from its row: its tables and the modules that own their SQL."""
    return {kind: (frozenset(row.tables), frozenset(module_path(m) for m in row.sql_owners))
            for kind, row in rows.items()}


FAMILIES = {**SHARED, **kind_families(SHIPPED)}

# modules whose SQL names its table through a variable the scanner cannot follow (``FROM {table}``),
# each with why: the tables it can name are its own, or it is a row-by-id reader like ``personahub sql``
DYNAMIC: dict[str, str] = {
    "personahub/core/store.py": "the schema's generic batch insert, given its table by the owner",
    "sim/store.py": "counts of its own run-log tables",
    "sim/run_queries.py": "the API's rows of its own run-log tables (run_rows)",
    "personas/store.py": "a temporary view of its own registering (dedup's marks)",
    "personas/dedup_languages.py": "a temporary view of its own registering",
    "personas/embedding_store.py": "a temporary view of its own registering",
    "analysis/preview.py": ("personahub show: one whole row by id of synth_items, emissions or "
                            "personas, a read-only lookup like personahub sql"),
}

_SQL = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_NAMED = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)
_UNFOLLOWED = "{?}"  # an f-string placeholder the scanner cannot resolve to a string
# core/store.py's batch inserts, which write the table they are given (their second argument)
_INSERTERS = frozenset({"insert_rows", "insert_columns"})
_NAMED_BY_VARIABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+\{\?\}", re.IGNORECASE)


Families = Mapping[str, tuple[frozenset[str], frozenset[str]]]


def created_tables(ddl: str) -> set[str]:
    """Every table a DDL text creates."""
    return set(re.findall(r"CREATE TABLE IF NOT EXISTS ([a-z_]+)", ddl))


def schema_tables() -> set[str]:
    """Every table ``schema.sql`` creates."""
    return created_tables(SCHEMA.read_text())


def unfamilied(tables: set[str], families: Families) -> list[str]:
    """What is wrong between the tables a schema creates and the families: a table in no
    family, one in two, or a family's table the schema does not create (empty when none)."""
    named = [table for owned, _ in families.values() for table in owned]
    return ([f"{t}: in no family (add it to its kind's row, tables=...)"
             for t in sorted(tables - set(named))]
            + [f"{t}: in two families" for t in sorted({t for t in named if named.count(t) > 1})]
            + [f"{t}: not in the schema" for t in sorted(set(named) - tables)])


def family_of(table: str, families: Families = FAMILIES) -> str | None:
    return next((name for name, (tables, _) in families.items() if table in tables), None)


def owns(family: str, module: str, families: Families = FAMILIES) -> bool:
    """Whether ``module`` (a path relative to the checkout) owns ``family``'s SQL."""
    if module in SCHEMA_MODULES or module in EXAMPLES:
        return True
    return module in families[family][1]


def _constants(tree: ast.Module) -> dict[str, str]:
    """A module's top-level string constants (``JOBS = "calibration_jobs"``)."""
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            for target in node.targets if isinstance(target, ast.Name)}


def _inserted_table(node: ast.Call, constants: dict[str, str]) -> str | None:
    """The table a call of a batch insert (``insert_rows(con, "relations", ...)``) names, as a
    string or a module constant; None for any other call."""
    callee = node.func.id if isinstance(node.func, ast.Name) else \
        node.func.attr if isinstance(node.func, ast.Attribute) else None
    if callee not in _INSERTERS or len(node.args) < 2:
        return None
    table = node.args[1]
    if isinstance(table, ast.Constant) and isinstance(table.value, str):
        return table.value
    return constants.get(table.id) if isinstance(table, ast.Name) else None


def sql_texts(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, text) of each string that may be SQL: plain strings, f-strings with their
    placeholders filled from the module's string constants (``_UNFOLLOWED`` where they are not),
    and ``INSERT INTO`` the table a batch insert of ``core/store.py`` is given by name."""
    constants = _constants(tree)
    texts: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            parts = [part.value if isinstance(part, ast.Constant) else
                     constants.get(part.value.id, _UNFOLLOWED)
                     if isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
                     else _UNFOLLOWED for part in node.values]
            texts.append((node.lineno, "".join(str(p) for p in parts)))
        elif isinstance(node, ast.Call) and (table := _inserted_table(node, constants)):
            texts.append((node.lineno, f"INSERT INTO {table}"))
    return [(line, text) for line, text in texts if _SQL.search(text)]


def scan(paths: list[Path] | None = None, families: Families = FAMILIES,
         ) -> tuple[dict[tuple[str, str], list[int]], dict[str, list[int]]]:
    """(crossings, by-variable): (module, family) -> lines of SQL naming a table the module does
    not own; module -> lines of SQL naming its table through a variable. ``paths``: the
    package's modules unless given."""
    found: dict[tuple[str, str], list[int]] = {}
    unfollowed: dict[str, list[int]] = {}
    for path in sources() if paths is None else paths:
        module = path.relative_to(ROOT).as_posix()
        for line, text in sql_texts(parsed(path)):
            if _NAMED_BY_VARIABLE.search(text):
                unfollowed.setdefault(module, []).append(line)
            for table in _NAMED.findall(text):
                family = family_of(table.lower(), families)
                if family is not None and not owns(family, module, families):
                    found.setdefault((module, family), []).append(line)
    return found, unfollowed


def crossings() -> dict[tuple[str, str], list[int]]:
    """(module, family) -> lines, for each SQL literal naming a table the module does not own."""
    return scan()[0]


def test_every_table_has_a_family() -> None:
    """Each table of the schema is in one family: a kind's row names its own."""
    assert unfamilied(schema_tables(), FAMILIES) == []
    assert all(row.tables for row in SHIPPED.values())


def test_a_row_without_its_table_is_detected() -> None:
    rows = {**SHIPPED, "judge": SHIPPED["judge"].replace(tables=())}
    assert unfamilied(schema_tables(), {**SHARED, **kind_families(rows)}) == [
        "judgments: in no family (add it to its kind's row, tables=...)"]
    rows = {**SHIPPED, "judge": SHIPPED["judge"].replace(tables=("judgments", "interviews"))}
    assert unfamilied(schema_tables() | {"x"}, {**SHARED, **kind_families(rows)}) == [
        "x: in no family (add it to its kind's row, tables=...)", "interviews: in two families"]


def test_every_owner_is_a_module() -> None:
    owners = set().union(*(modules for _, modules in FAMILIES.values()), DYNAMIC)
    assert not {o for o in owners if not (ROOT / o).is_file()}, "owners are modules that exist"


@pytest.mark.slow
def test_no_sql_reaches_into_another_familys_tables() -> None:
    found = crossings()
    assert not found, ("SQL on another family's tables (use the owner's functions or the analysis "
                       f"views): {sorted(found.items())}")


def test_a_table_named_by_a_variable_is_in_a_module_that_says_why() -> None:
    unfollowed = scan()[1]
    unexplained = {m: lines for m, lines in unfollowed.items() if m not in DYNAMIC}
    assert not unexplained, ("SQL naming its table through a variable: name it in the string, or "
                             f"add the module to DYNAMIC with why: {sorted(unexplained.items())}")
    assert not set(DYNAMIC) - set(unfollowed), "take modules that no longer do so off DYNAMIC"


def test_the_check_sees_a_crossing() -> None:
    """The scanner finds SQL in a plain string, a query with a JOIN, an f-string's parts, a
    table an f-string takes from a module constant, one it takes from a variable, and the
    table a batch insert is given."""
    tree = ast.parse('T = "calibration_jobs"\n'
                     'q = "SELECT a FROM runs r JOIN personas p USING (id)"\n'
                     'w = f"UPDATE synth_items SET x = {1}"\n'
                     'c = f"SELECT * FROM {T} WHERE job_id = ?"\n'
                     'd = f"SELECT * FROM {table}"\n'
                     'insert_rows(con, "run_agents", rows)\n'
                     'store.insert_columns(con, T, columns)\n')
    texts = sql_texts(tree)
    named = [t for _, text in sorted(texts) for t in _NAMED.findall(text)]
    assert named == ["runs", "personas", "synth_items", "synth_items", "calibration_jobs",
                     "run_agents", "calibration_jobs"]
    assert [line for line, text in texts if _NAMED_BY_VARIABLE.search(text)] == [5]
    assert not owns("run", "analysis/report.py") and owns("run", "sim/store.py")
    assert owns("expansion", "personas/expand.py") and not owns("persona hub", "personas/expand.py")
    assert owns("persona hub", "personas/store.py") and not owns("persona hub", "personas/graph.py")
