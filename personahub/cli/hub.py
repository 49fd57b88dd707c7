"""personahub personas commands that call no model: import, sample (carving), stats and
export-graph (dedup is a job of its own: personahub.cli.dedup)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, cast

import typer
from rich.table import Table

from personahub.cli.common import console, one_line_errors, out, say
from personahub.cli.job_running import job_progress
from personahub.cli.options import DbOption
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.outputs import FORCE_HELP, atomic_file, check_output
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED


@one_line_errors
def personas_import(
    file: Annotated[Path, typer.Argument(help="Persona file (JSONL, CSV, Parquet; .gz allowed).")],
    db: DbOption = Path(DEFAULT_DB),
    fmt: Annotated[Literal["auto", "personahub", "personahub-synth", "finepersonas", "attributes",
                           "jsonl", "csv", "parquet"], typer.Option(
        "--format", help="The file's format (auto: from the extension and, for JSONL, the keys "
                         "of the first record).")] = "auto",
    text_column: Annotated[str | None, typer.Option(help="Column holding the persona text.")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip malformed records and count them.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Personas per transaction.")] = 50_000,
) -> None:
    """Import personas into the hub (exact duplicates collapse; provenance is kept)."""
    from personahub.core.store import connect, transaction
    from personahub.personas.hub_gate import count_failed
    from personahub.personas.hub_import import ImportWrites, insert_staged, stage_personas
    from personahub.personas.hub_memory import IMPORT_MEMORY_MB, bound_memory, personas_keyed
    from personahub.personas.importers import FORMATS, ImportStats, KeptRow, iter_persona_batches
    from personahub.personas.persona_texts import SourceText, insert_source_texts
    from personahub.personas.store import upsert_personas

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    stats = ImportStats()
    kept: list[KeptRow] = []  # a synthesis file's rows, whole (persona_texts)
    batches = iter_persona_batches(file, batch_size=batch_size, fmt=fmt, text_column=text_column,
                                   skip_bad=skip_bad, stats=stats, synth_rows=kept)
    first = next(batches, None)  # file-level errors surface before the database is opened
    if first is None and not stats.read:
        raise PersonahubError(f"{file}: no persona records (the file is empty)")
    con = connect(db)
    added = texts = failed = 0
    try:
        keyed = personas_keyed(con)  # a file made before the key was dropped: looked up by it
        if not keyed:  # the staged rows and the table's cache spill past the limit
            bound_memory(con, IMPORT_MEMORY_MB)
        writes = ImportWrites()
        with job_progress() as bar:
            task = bar.add_task(f"importing {file.name}", total=None)
            with transaction(con):  # the whole file or nothing
                for batch in itertools.chain([first] if first else [], batches):
                    if keyed:
                        added += upsert_personas(con, batch)
                        failed += count_failed(con, [p.persona_id for p in batch])
                    else:
                        stage_personas(con, batch, writes)
                    texts += insert_source_texts(con, [
                        SourceText.of(p.source, n, p.persona_id, row) for n, row, p in kept])
                    kept.clear()
                    bar.update(task, completed=stats.read)
                if not keyed:  # exact repeats, in the file or of the hub, collapse to the first
                    added, failed = insert_staged(con, writes)
    finally:
        con.close()
    out.print(f"read {stats.read} records: {stats.imported} personas, {added} new in {db}, "
              f"{stats.bad} bad skipped", soft_wrap=True)
    if failed:
        out.print(f"{failed} of them fail the quality gate's rules: kept with gate 'failed', and "
                  "left out of draws unless --include-ungated (docs/personas.md)", highlight=False,
                  soft_wrap=True)
    if texts:
        out.print(f"kept {texts} synthesized texts (personahub export --source-file {file})",
                  highlight=False, soft_wrap=True)
    if stats.unmapped:
        columns = ", ".join(f"{column} {n}" for column, n in stats.unmapped.most_common())
        out.print(f"demographics: values outside the vocabulary left unmapped ({columns}); the "
                  "rows are imported without that key (docs/personas.md)", highlight=False,
                  soft_wrap=True)
    for example in stats.bad_examples:
        out.print(f"  skipped {example}", highlight=False, soft_wrap=True)


@one_line_errors
def personas_sample(
    db: DbOption = Path(DEFAULT_DB),
    where: Annotated[list[str] | None, typer.Option(
        "--where", "-w", "--carve",
        help="Attribute condition KEY OP VALUE (= != >= <= > < ~), repeatable: age>=30, "
             "occupation=nurse, labels=finance, hop>=2, age_group=30-49, party=Democrat "
             "(demographic keys take any known spelling of a value; docs/personas.md).")] = None,
    contains: Annotated[str | None, typer.Option(help="Text contains (case-insensitive).")] = None,
    regex: Annotated[str | None, typer.Option(help="Text matches this regular expression.")] = None,
    ilike: Annotated[str | None, typer.Option(help="Text ILIKE pattern (% and _ wildcards).")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only this source (expand, "
                                                          "text-to-persona, a file), repeatable.")] = None,
    near: Annotated[str | None, typer.Option(help="Only personas within --within hops of this "
                                                  "persona id (relations, either direction).")] = None,
    within: Annotated[int, typer.Option(min=0, max=6, help="Hops for --near.")] = 1,
    include_duplicates: Annotated[bool, typer.Option(help="Keep flagged near-duplicates.")] = False,
    include_ungated: Annotated[bool, typer.Option(
        help="Draw personas the quality gate did not pass too: imported rows that fail it and "
             "the offline engine's (the gate column says which).")] = False,
    k: Annotated[int | None, typer.Option("-k", "--k", min=0, help="Sample this many.")] = None,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Sampling seed.")] = 0,
    stratify: Annotated[str | None, typer.Option(help="Stratify the sample by this attribute.")] = None,
    equal: Annotated[bool, typer.Option(help="Equal share per stratum (default proportional).")] = False,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSONL "
                                                '({"persona": ...} per line) here.')] = None,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
    with_attributes: Annotated[bool, typer.Option(help="JSONL: add the attributes as fields.")] = False,
    fmt: Annotated[Literal["table", "jsonl", "ids"], typer.Option(
        "--format", help="What is printed.")] = "table",
    show: Annotated[int, typer.Option(min=1, help="Rows to print at most (table).")] = 50,
) -> None:
    """Carve the hub: select by attribute, text or neighbourhood, then sample (seeded).

    Fewer matches than -k prints a note on stderr: how many matched, and how many more the
    quality gate (--include-ungated) or the near-duplicate flag (--include-duplicates) held back.
    """
    from personahub.core.store import connect
    from personahub.personas.carve import Selection, carve, shortfall
    from personahub.personas.hub_gate import persona_gates
    from personahub.personas.hub_memory import SAMPLE_MEMORY_MB, bound_memory

    if fmt not in ("table", "jsonl", "ids"):
        raise UsageError(f"--format {fmt!r}: use table, jsonl or ids")
    if output is not None:
        check_output(output, db=db, force=force)
    selection = Selection(where=where or (), contains=contains, regex=regex, ilike=ilike, near=near,
                          within=within, include_duplicates=include_duplicates, sources=source or (),
                          include_ungated=include_ungated)
    con = connect(db, read_only=True)
    try:
        bound_memory(con, SAMPLE_MEMORY_MB)  # read in ranges: a larger hub evicts, not grows
        personas = carve(con, selection, k=k, seed=seed, stratify=stratify, equal=equal)
        gates = persona_gates(con, [p.persona_id for p in personas[:show]])
        fewer = shortfall(con, selection, k, len(personas))
    except UsageError:  # a --where that does not parse (a ValueError too): exit 2
        raise
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None
    finally:
        con.close()
    lines = [_jsonl_line(p, with_attributes) for p in personas]
    if fewer:  # on stderr: stdout stays data
        say(("note:", "yellow"), f" {fewer}")
    if output is not None:
        with atomic_file(output, overwrite=force) as f:
            f.write("".join(line + "\n" for line in lines))
        console.print(f"wrote {len(personas)} personas to {output}", soft_wrap=True)
        return
    if fmt == "ids":
        sys.stdout.write("".join(p.persona_id + "\n" for p in personas))
    elif fmt == "jsonl":
        sys.stdout.write("".join(line + "\n" for line in lines))
    else:
        table = Table("persona_id", "hop", "source", "gate", "text",
                      title=f"{len(personas)} personas")
        for p in personas[:show]:
            table.add_row(p.persona_id, str(p.hop), p.source, gates.get(p.persona_id, ""), p.text)
        out.print(table)


def _jsonl_line(persona: Any, with_attributes: bool) -> str:
    record: dict[str, object] = {"persona": persona.text}
    if with_attributes:
        record.update({k: v for k, v in persona.attributes.items() if k != "persona"})
    return json.dumps(record, ensure_ascii=False, default=str)


@one_line_errors
def personas_stats(
    db: DbOption = Path(DEFAULT_DB),
    include_duplicates: Annotated[bool, typer.Option(help="Count flagged near-duplicates too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Graph statistics: nodes, edges, components, cycles, clustering, degrees, hops, relation
    labels, and the same shape figures per expansion (newest ten)."""
    from personahub.core.store import connect
    from personahub.personas.expand import expansion_graph_stats, list_expansions
    from personahub.personas.graph import hub_graph_stats
    from personahub.personas.hub_memory import bound_memory
    from personahub.personas.store import flagged_duplicate_count

    con = connect(db, read_only=True)
    try:
        bound_memory(con)  # counted in SQL: a hub larger than memory spills
        stats = hub_graph_stats(con, include_duplicates=include_duplicates)
        stats["flagged_duplicates"] = flagged_duplicate_count(con)
        stats["expansions"] = {e.expansion_id: expansion_graph_stats(con, e.expansion_id)
                               for e in list_expansions(con)[:10]}
    finally:
        con.close()
    if as_json:
        sys.stdout.write(json.dumps(stats, default=str) + "\n")
        return
    table = Table(show_header=False, title="persona graph" + (" (duplicates included)"
                                                             if include_duplicates else ""))
    names = {"edges": "edges (pairs of related personas)",
             "relations": "relations (labelled; a pair may hold several)"}
    for key in ("nodes", "edges", "relations", "components", "largest_component", "isolated",
                "cycles", "clustering", "flagged_duplicates", "distinct_labels"):
        table.add_row(names.get(key, key.replace("_", " ")), str(stats[key]))
    degree = stats["degree"]
    table.add_row("degree min/median/max (personas related to)",
                  f"{degree['min']} / {degree['median']} / {degree['max']} (mean {degree['mean']})")
    out.print(table)
    for title, key in (("degree histogram", "degree_histogram"), ("personas by hop", "nodes_by_hop"),
                       ("relations by hop", "edges_by_hop"), ("personas by source", "nodes_by_source"),
                       ("relation labels", "relation_labels")):
        counts = Table(title.split(" by ")[-1] if " by " in title else "value", "count", title=title)
        top = max(stats[key].values(), default=1)
        for value, count in stats[key].items():
            counts.add_row(str(value), f"{count} {'█' * max(1, round(20 * count / top))}")
        out.print(counts)
    if stats["expansions"]:
        shapes = Table("expansion", "nodes", "edges", "components", "cycles", "clustering",
                       "degrees", title="expansions (newest first)")
        for expansion_id, shape in stats["expansions"].items():
            shapes.add_row(expansion_id, *(str(shape[k]) for k in (
                "nodes", "edges", "components", "cycles", "clustering")),
                ", ".join(f"{k}: {v}" for k, v in shape["degree_histogram"].items()))
        out.print(shapes)


@one_line_errors
def personas_export_graph(
    output: Annotated[Path, typer.Option("--out", "-o", help="GraphML file to write.")],
    db: DbOption = Path(DEFAULT_DB),
    include_duplicates: Annotated[bool, typer.Option(help="Export flagged near-duplicates too.")] = False,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
) -> None:
    """Export the persona graph as GraphML (attributes JSON-encoded; relations as edge keys)."""
    from personahub.core.store import connect
    from personahub.personas.graph import load_graph, write_graphml

    check_output(output, db=db, force=force)
    con = connect(db, read_only=True)
    try:
        graph = load_graph(con, include_duplicates=include_duplicates)
    finally:
        con.close()
    with atomic_file(output, overwrite=force, binary=True) as f:
        write_graphml(graph, cast(BinaryIO, f))  # opened binary=True
    out.print(f"wrote {graph.number_of_nodes()} nodes and {graph.number_of_edges()} edges to {output}",
              soft_wrap=True)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {
    ("personas", "import"): personas_import,
    ("personas", "sample"): personas_sample,
    ("personas", "stats"): personas_stats,
    ("personas", "export-graph"): personas_export_graph,
}
