"""Persona-pipeline CLI commands registered onto ``personahub personas``.

``from-text`` (text-to-persona), ``sample`` (carving), ``stats`` and ``export-graph``; also the
resume lookup used by ``personas expand``. Imported at the end of ``sim/cli.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from personahub.personas.errors import PersonahubError
from personahub.personas.outputs import FORCE_HELP, atomic_file, check_output
from personahub.personas.store import DEFAULT_DB
from personahub.sim.cli import (
    CacheOption,
    ConcurrencyOption,
    DbOption,
    LanguageOption,
    LlmOption,
    MaxTokensOption,
    ModelFlags,
    RpsOption,
    StructuredOption,
    TemperatureOption,
    TimeoutOption,
    TopPOption,
    _progress,
    console,
    make_client,
    one_line_errors,
    out,
    personas_app,
)
from personahub.sim.interrupts import signal_name
from rich.table import Table


def unfinished_expansion(db: Path, *, hops: int, fanout: int, limit: int | None,
                         fresh: bool, language: str | None = None
                         ) -> tuple[Any, list[str], str | None, dict[str, Any]]:
    """Open the hub for ``personas expand``: (connection, start ids, expansion id to resume, its
    stored config — empty for a new expansion).

    An unfinished CLI expansion with the same hops, fanout, limit and language is resumed (its
    own start personas are kept: the hub has grown since); ``fresh`` marks it superseded and
    starts anew. An unknown ``language`` is an error before the database is opened.
    """
    from personahub.personas.expand import find_unfinished
    from personahub.personas.quality import language_scripts
    from personahub.personas.store import connect

    try:
        if language is not None:
            language_scripts(language)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None
    if not Path(db).exists():  # do not leave an empty database behind
        raise PersonahubError(f"--db {db}: no such database; run 'personahub personas import' first")
    con = connect(db)
    try:
        info = find_unfinished(con, hops=hops, fanout=fanout, limit=limit, origin="cli",
                               language=language)
        if info is not None and fresh:
            con.execute("UPDATE expansions SET status = 'superseded' WHERE expansion_id = ?",
                        [info.expansion_id])
            info = None
        if info is not None:
            console.print(f"resuming expansion {info.expansion_id}: {info.hops_done} of {hops} hop(s) "
                          f"done, {info.pending} frontier persona(s) pending (--fresh starts anew)")
            return con, [], info.expansion_id, dict(info.config)
        sql_text = "SELECT persona_id FROM personas WHERE NOT coalesce(is_duplicate, false) ORDER BY seq"
        start = [r[0] for r in con.execute(sql_text).fetchall()][:limit]
        if not start:
            raise PersonahubError(
                f"--db {db}: the hub has no personas; run 'personahub personas import' first")
        return con, start, None, {}
    except BaseException:
        con.close()
        raise


@personas_app.command("from-text")
@one_line_errors
def personas_from_text(
    corpus: Annotated[Path, typer.Argument(help="Corpus: JSONL, CSV or Parquet (one text per record), "
                                                "or plain text (one text per paragraph).")],
    db: DbOption = Path(DEFAULT_DB),
    relations: Annotated[str, typer.Option(help="Comma-separated: who is likely to read, write, "
                                                "like, dislike the text.")] = "read,write,like,dislike",
    text_column: Annotated[str | None, typer.Option(help="Field holding the text (default: text, "
                                                         "content, body, document).")] = None,
    id_column: Annotated[str | None, typer.Option(help="Field holding the text id "
                                                       "(default: FILE:LINE).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N texts only.")] = None,
    per_text: Annotated[int, typer.Option(min=1, max=10, help="Personas per text and relation, "
                                                              "at most.")] = 1,
    split: Annotated[str, typer.Option(help="Plain text: 'paragraph' (blank-line separated) "
                                            "or 'line'.")] = "paragraph",
    corpus_name: Annotated[str | None, typer.Option("--corpus", help="Corpus name for provenance and "
                                                    "resume (default: the file name).")] = None,
    skip_bad: Annotated[bool, typer.Option(help="Skip malformed records and count them.")] = False,
    language: LanguageOption = None,
    llm: LlmOption = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed (offline engine; default: the seed the corpus's job was started with, else 0).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per transaction.")] = 64,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    cache: CacheOption = "off",
    rps: RpsOption = None,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
) -> None:
    """Text-to-persona: ask who is likely to read / write / like / dislike each text.

    Resumable: texts already answered for a relation (table text_done) are skipped, so re-run
    the same command after an interruption (with the job's stored seed and generation settings
    unless given again).
    """
    from itertools import islice

    from personahub.agents.llm import redact_spec, resolve_spec
    from personahub.personas.importers import ImportStats
    from personahub.personas.quality import language_scripts, rejection_line
    from personahub.personas.store import connect
    from personahub.personas.text_to_persona import iter_texts, parse_relations, text_to_persona
    from personahub.sim.jobs import (
        attach_cache,
        check_cache_mode,
        finish_text_job,
        job_loop,
        start_text_job,
        text_job_config,
    )

    try:
        chosen = parse_relations(relations)
        stats = ImportStats()
        texts = iter_texts(corpus, text_column=text_column, id_column=id_column, split=split,
                           name=corpus_name, skip_bad=skip_bad, stats=stats)
        if language is not None:
            language_scripts(language)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None
    check_cache_mode(cache)
    name = corpus_name or corpus.name
    flags = ModelFlags(structured, max_tokens, temperature, top_p)
    con = connect(db)
    try:
        stored = text_job_config(con, name) or {}  # read before the client is built from it
        seed = seed if seed is not None else int(stored.get("seed", 0))
        if flags == ModelFlags() and stored:  # no generation flag given: the job's own
            flags = ModelFlags(*(stored.get(k, getattr(flags, k)) for k in
                                 ("structured", "max_tokens", "temperature", "top_p")))
        spec = resolve_spec(llm)
        client = make_client(spec, seed, concurrency, timeout, rps=rps, check=cache != "replay",
                             flags=flags)
        attach_cache(con, client, cache)  # a replay with nothing recorded stops here
        start_text_job(con, name, {"seed": seed, "llm": redact_spec(spec), **flags.settings(),
                                   "relations": list(chosen), "per_text": per_text,
                                   "language": language})
        try:
            with _progress(client) as bar, job_loop() as loop:
                task = bar.add_task(f"text-to-persona {name} (texts)", total=limit)
                summary = loop.run(text_to_persona(
                    con, client, islice(texts, limit), corpus=name, relations=chosen,
                    per_text=per_text, batch_size=batch_size, concurrency=concurrency,
                    language=language,
                    progress=lambda _, done, __: bar.update(task, completed=done)))
        except KeyboardInterrupt as exc:
            finish_text_job(con, name, "interrupted", f"interrupted by {signal_name(exc)}")
            raise
        except BaseException as exc:
            finish_text_job(con, name, "failed", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        finish_text_job(con, name, "finished")
    finally:
        con.close()
    out.print(f"{summary.texts} texts × {len(chosen)} relation(s): {summary.already_done} already done, "
              f"asked {summary.asked}, {summary.failed_calls} failed (re-run to retry); "
              f"{summary.personas} personas, {summary.new_personas} new in {db}")
    out.print(rejection_line(summary.rejected), highlight=False)
    if stats.bad:
        out.print(f"{stats.bad} bad records skipped")
        for example in stats.bad_examples:
            out.print(f"  skipped {example}", highlight=False)


@personas_app.command("sample")
@one_line_errors
def personas_sample(
    db: DbOption = Path(DEFAULT_DB),
    where: Annotated[list[str] | None, typer.Option(
        "--where", "-w", help="Attribute condition KEY OP VALUE (= != >= <= > < ~), repeatable: "
                              "age>=30, occupation=nurse, labels=finance, hop>=2.")] = None,
    contains: Annotated[str | None, typer.Option(help="Text contains (case-insensitive).")] = None,
    regex: Annotated[str | None, typer.Option(help="Text matches this regular expression.")] = None,
    ilike: Annotated[str | None, typer.Option(help="Text ILIKE pattern (% and _ wildcards).")] = None,
    source: Annotated[list[str] | None, typer.Option(help="Only this source (expand, "
                                                          "text-to-persona, a file), repeatable.")] = None,
    near: Annotated[str | None, typer.Option(help="Only personas within --within hops of this "
                                                  "persona id (relations, either direction).")] = None,
    within: Annotated[int, typer.Option(min=0, max=6, help="Hops for --near.")] = 1,
    include_duplicates: Annotated[bool, typer.Option(help="Keep flagged near-duplicates.")] = False,
    k: Annotated[int | None, typer.Option("-k", "--k", min=0, help="Sample this many.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    stratify: Annotated[str | None, typer.Option(help="Stratify the sample by this attribute.")] = None,
    equal: Annotated[bool, typer.Option(help="Equal share per stratum (default proportional).")] = False,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write JSONL "
                                                '({"persona": ...} per line) here.')] = None,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
    with_attributes: Annotated[bool, typer.Option(help="JSONL: add the attributes as fields.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="Printed: table, jsonl or ids.")] = "table",
    show: Annotated[int, typer.Option(min=1, help="Rows to print at most (table).")] = 50,
) -> None:
    """Carve the hub: select by attribute, text or neighbourhood, then sample (seeded)."""
    from personahub.personas.carve import Selection, carve
    from personahub.personas.store import connect

    if fmt not in ("table", "jsonl", "ids"):
        raise PersonahubError(f"--format {fmt!r}: use table, jsonl or ids")
    if output is not None:
        check_output(output, db=db, force=force)
    selection = Selection(where=where or (), contains=contains, regex=regex, ilike=ilike, near=near,
                          within=within, include_duplicates=include_duplicates, sources=source or ())
    con = connect(db, read_only=True)
    try:
        personas = carve(con, selection, k=k, seed=seed, stratify=stratify, equal=equal)
    except ValueError as exc:
        raise PersonahubError(str(exc)) from None
    finally:
        con.close()
    lines = [_jsonl_line(p, with_attributes) for p in personas]
    if output is not None:
        with atomic_file(output, overwrite=force) as f:
            f.write("".join(line + "\n" for line in lines))
        console.print(f"wrote {len(personas)} personas to {output}")
        return
    if fmt == "ids":
        sys.stdout.write("".join(p.persona_id + "\n" for p in personas))
    elif fmt == "jsonl":
        sys.stdout.write("".join(line + "\n" for line in lines))
    else:
        table = Table("persona_id", "hop", "source", "text", title=f"{len(personas)} personas")
        for p in personas[:show]:
            table.add_row(p.persona_id, str(p.hop), p.source, p.text)
        out.print(table)


def _jsonl_line(persona: Any, with_attributes: bool) -> str:
    record: dict[str, Any] = {"persona": persona.text}
    if with_attributes:
        record.update({k: v for k, v in persona.attributes.items() if k != "persona"})
    return json.dumps(record, ensure_ascii=False, default=str)


@personas_app.command("stats")
@one_line_errors
def personas_stats(
    db: DbOption = Path(DEFAULT_DB),
    include_duplicates: Annotated[bool, typer.Option(help="Count flagged near-duplicates too.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Graph statistics: nodes, edges, components, degrees, hops, relation labels."""
    from personahub.personas.graph import graph_stats, load_graph
    from personahub.personas.store import connect, scalar

    con = connect(db, read_only=True)
    try:
        stats = graph_stats(load_graph(con, include_duplicates=include_duplicates))
        stats["flagged_duplicates"] = scalar(con, "SELECT count(*) FROM personas WHERE is_duplicate")
    finally:
        con.close()
    if as_json:
        sys.stdout.write(json.dumps(stats, default=str) + "\n")
        return
    table = Table(show_header=False, title="persona graph" + (" (duplicates included)"
                                                             if include_duplicates else ""))
    for key in ("nodes", "edges", "components", "largest_component", "isolated", "flagged_duplicates",
                "distinct_labels"):
        table.add_row(key.replace("_", " "), str(stats[key]))
    degree = stats["degree"]
    table.add_row("degree min/median/max", f"{degree['min']} / {degree['median']} / {degree['max']} "
                                           f"(mean {degree['mean']})")
    out.print(table)
    for title, key in (("degree histogram", "degree_histogram"), ("personas by hop", "nodes_by_hop"),
                       ("relations by hop", "edges_by_hop"), ("personas by source", "nodes_by_source"),
                       ("relation labels", "relation_labels")):
        counts = Table(title.split(" by ")[-1] if " by " in title else "value", "count", title=title)
        top = max(stats[key].values(), default=1)
        for value, count in stats[key].items():
            counts.add_row(str(value), f"{count} {'█' * max(1, round(20 * count / top))}")
        out.print(counts)


@personas_app.command("export-graph")
@one_line_errors
def personas_export_graph(
    output: Annotated[Path, typer.Option("--out", "-o", help="GraphML file to write.")],
    db: DbOption = Path(DEFAULT_DB),
    include_duplicates: Annotated[bool, typer.Option(help="Export flagged near-duplicates too.")] = False,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
) -> None:
    """Export the persona graph as GraphML (attributes JSON-encoded; relations as edge keys)."""
    from personahub.personas.graph import load_graph, write_graphml
    from personahub.personas.store import connect

    check_output(output, db=db, force=force)
    con = connect(db, read_only=True)
    try:
        graph = load_graph(con, include_duplicates=include_duplicates)
    finally:
        con.close()
    with atomic_file(output, overwrite=force, binary=True) as f:
        write_graphml(graph, f)
    out.print(f"wrote {graph.number_of_nodes()} nodes and {graph.number_of_edges()} edges to {output}")


@personas_app.command("dedup")
@one_line_errors
def personas_dedup(
    db: DbOption = Path(DEFAULT_DB),
    threshold: Annotated[float, typer.Option(help="Stage 1: MinHash Jaccard threshold.")] = 0.9,
    num_perm: Annotated[int, typer.Option(help="Stage 1: MinHash permutations.")] = 128,
    ngram: Annotated[int, typer.Option(min=1, help="Stage 1: word n-gram size.")] = 1,
    embedder: Annotated[str, typer.Option(
        help="Stage 2 embedder: 'hash' (feature hashing, not a neural model), 'local' "
             "(all-MiniLM-L6-v2, needs personahub[embed]), 'openai:text-embedding-3-small', "
             "or 'none' to skip stage 2.")] = "hash",
    embed_threshold: Annotated[float, typer.Option(help="Stage 2: cosine threshold.")] = 0.9,
    ann: Annotated[str, typer.Option(help="Stage 2 index: auto, ivf, faiss, usearch.")] = "auto",
) -> None:
    """Flag near-duplicate personas: MinHash LSH, then embedding similarity (never deletes)."""
    from personahub.personas.dedup import DedupConfig, run_dedup
    from personahub.personas.minhash import MinHashConfig
    from personahub.personas.store import connect

    try:
        config = DedupConfig(
            minhash=MinHashConfig(num_perm=num_perm, threshold=threshold, ngram=ngram),
            embed_threshold=embed_threshold,
            embedder=None if embedder.lower() == "none" else embedder,
            ann_index=ann,
        )
    except ValueError as exc:
        raise PersonahubError(f"personas dedup: {exc}") from exc
    if not Path(db).exists():
        raise PersonahubError(f"--db {db}: no such database (import personas first)")
    con = connect(db)
    try:
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def hook(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(f"dedup: {stage}", total=total)
                bar.update(tasks[stage], completed=done)

            summary = run_dedup(con, config, progress=hook)
    finally:
        con.close()
    if config.embedder == "hash":
        console.print("stage 2 used the 'hash' embedder (feature hashing, not a neural model); "
                      "--embedder local or openai:<model> gives the paper's semantic stage.")
    out.print(str(summary), highlight=False)
