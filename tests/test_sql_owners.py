"""Each table family's SQL lives with the family (issue 27, item 3; ``docs/architecture.md``,
"Who owns which SQL"): a string literal that reads or writes a family's table (``FROM``,
``JOIN``, ``INTO``, ``UPDATE`` it) sits in one of the family's own modules, or in the schema's
(``core/store.py``, ``core/migrate.py``: they make and upgrade every table).

The families and their owners are ``FAMILIES`` below. What still reaches across is listed in
``KNOWN`` with the reason: most are reads of another family's rows that are to go through the
analysis views (``analysis/views.sql``) or the owner's functions. A new crossing fails the test,
and so does a listed one that is gone (take it off the list): the list only shrinks.
"""

from __future__ import annotations

import ast
import re

from tests.test_layers import ROOT, sources

SCHEMA = ROOT / "personahub" / "core" / "schema.sql"
# the modules that make and upgrade every table
SCHEMA_MODULES = {"personahub/core/store.py", "personahub/core/migrate.py"}
# queries shown to the user (a help text, the "Try:" lines after a run), never run by the module
EXAMPLES = {"personahub/cli/run.py", "personahub/cli/sql.py"}

# family -> (its tables, the modules (or folders, ending in "/") that own their SQL)
FAMILIES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "jobs": (frozenset({"jobs", "schema_meta"}),
             frozenset({"personahub/core/jobs_store.py", "personahub/core/stored_views.py"})),
    "calls": (frozenset({"llm_calls", "llm_cache", "prices", "llm_batches"}),
              frozenset({"personahub/core/commit.py", "personahub/core/call_log.py",
                         "personahub/core/batch_records.py", "agents/llm/cache.py"})),
    "personas and graph": (frozenset({
        "personas", "relations", "persona_texts", "text_done", "text_jobs",
        "dedup_jobs", "persona_embeddings", "dedup_judged", "persona_merges", "expansions",
        "expansion_frontier", "rejected"}), frozenset({"personas/"})),
    "run log": (frozenset({
        "runs", "run_agents", "steps", "emissions", "messages", "run_edges", "events",
        "interventions", "survey_answers", "agent_states", "decisions"}),
        frozenset({"sim/store.py", "sim/run_queries.py"})),
    "synthesis": (frozenset({"synth_jobs", "synth_job_personas", "synth_items"}),
                  frozenset({"pipelines/synthesize.py", "pipelines/synthesis_inputs.py"})),
    "judgments": (frozenset({"judgments"}), frozenset({"analysis/judgments.py"})),
    "interviews": (frozenset({"interviews"}), frozenset({"pipelines/interview.py"})),
    "calibration": (frozenset({
        "calibration_jobs", "calibration_questions", "calibration_human", "calibration_panels",
        "calibration_answers", "calibration_scores", "calibration_summary"}),
        frozenset({"analysis/calibration_store.py"})),
    "population": (frozenset({"population_jobs"}), frozenset({"pipelines/population_write.py"})),
}

_READ_VIEWS = "reads to go through analysis/views.sql or the owner's functions"
# (module, family): the crossings left, each to go (issue 27, item 3)
KNOWN: dict[tuple[str, str], str] = {
    ("personahub/results.py", "personas and graph"): _READ_VIEWS,
    ("personahub/results.py", "run log"): _READ_VIEWS,
    ("personahub/results.py", "calls"): _READ_VIEWS,
    ("personahub/results.py", "synthesis"): _READ_VIEWS,
    ("personahub/results.py", "judgments"): _READ_VIEWS,
    ("analysis/report.py", "personas and graph"): _READ_VIEWS,
    ("analysis/report.py", "run log"): _READ_VIEWS,
    ("analysis/report.py", "calls"): _READ_VIEWS,
    ("analysis/report.py", "synthesis"): _READ_VIEWS,
}

_SQL = re.compile(r"\b(?:SELECT|INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
_NAMED = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


def schema_tables() -> set[str]:
    """Every table ``schema.sql`` creates."""
    return set(re.findall(r"CREATE TABLE IF NOT EXISTS ([a-z_]+)", SCHEMA.read_text()))


def family_of(table: str) -> str | None:
    return next((name for name, (tables, _) in FAMILIES.items() if table in tables), None)


def owns(family: str, module: str) -> bool:
    """Whether ``module`` (a path relative to the checkout) owns ``family``'s SQL."""
    if module in SCHEMA_MODULES or module in EXAMPLES:
        return True
    return any(module == owner or (owner.endswith("/") and module.startswith(owner))
               for owner in FAMILIES[family][1])


def crossings() -> dict[tuple[str, str], list[int]]:
    """(module, family) -> lines, for each SQL literal naming a table the module does not own."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in sources():
        module = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and _SQL.search(node.value)):
                continue
            for table in _NAMED.findall(node.value):
                family = family_of(table.lower())
                if family is not None and not owns(family, module):
                    found.setdefault((module, family), []).append(node.lineno)
    return found


def test_every_table_has_a_family() -> None:
    families = set().union(*(tables for tables, _ in FAMILIES.values()))
    assert schema_tables() == families, "add each new table of schema.sql to its family here"


def test_no_new_sql_reaches_into_another_familys_tables() -> None:
    new = {key: lines for key, lines in crossings().items() if key not in KNOWN}
    assert not new, ("SQL on another family's tables (use the owner's functions or the analysis "
                     f"views): {sorted(new.items())}")


def test_the_known_crossings_are_all_still_there() -> None:
    gone = set(KNOWN) - set(crossings())
    assert not gone, f"no longer crossing: take these off KNOWN in tests/test_sql_owners.py: {sorted(gone)}"


def test_the_check_sees_a_crossing() -> None:
    """The scanner finds SQL in a plain string, a query with a JOIN and an f-string's parts."""
    tree = ast.parse('q = "SELECT a FROM runs r JOIN personas p USING (id)"\n'
                     'w = f"UPDATE synth_items SET x = {1}"\n')
    named = [t for node in ast.walk(tree) if isinstance(node, ast.Constant)
             and isinstance(node.value, str) and _SQL.search(node.value)
             for t in _NAMED.findall(node.value)]
    assert named == ["runs", "personas", "synth_items"]
    assert not owns("run log", "analysis/report.py") and owns("run log", "sim/store.py")
    assert owns("personas and graph", "personas/expand.py")
