"""An HTML report with PNG plots of a database's runs and synthesis jobs (matplotlib, Agg).

Sections: emissions over steps by kind, near-duplicate rates, the relationship graph's degree
distribution and a drawing of it (a node sample when it is large), the paper's diversity
analysis (embedding similarity of persona pairs vs that of their outputs on sampled pairs, with
the summary figures, distinct-1/2 and near-duplicate rate per kind/task; ``analysis.diversity``),
and survey answers over time when a ``survey_answers`` table exists.
Sections without data say so instead of failing.
"""

from __future__ import annotations

import html
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import networkx as nx  # noqa: E402
from personahub.analysis.diversity import SUMMARY_HEADER, embedder_label, summary_row  # noqa: E402
from personahub.analysis.diversity_table import DEFAULT_PAIRS, diversity_table  # noqa: E402
from personahub.analysis.views import install_views  # noqa: E402
from personahub.personas.embedding import Embedder, HashEmbedder, make_embedder  # noqa: E402
from personahub.personas.outputs import atomic_file  # noqa: E402

MAX_DRAWN_NODES = 300
# Every file a report may write into its folder (checked up front so --force means something).
REPORT_FILES = ("index.html", "emissions_over_steps.png", "duplicate_rate.png",
                "degree_distribution.png", "relationship_graph.png", "diversity.png",
                "survey_answers.png")


@dataclass
class Section:
    """One report section: a title, an optional image and optional HTML below it."""

    title: str
    image: str | None = None
    note: str = ""
    table: tuple[list[str], list[tuple[Any, ...]]] | None = None


@dataclass
class Report:
    """Where the report goes and what it has collected so far."""

    out_dir: Path
    run_id: str | None
    seed: int = 0
    overwrite: bool = False
    embedder: Embedder = field(default_factory=HashEmbedder)
    sections: list[Section] = field(default_factory=list)

    def save(self, fig: Any, name: str) -> str:
        """Write a figure as PNG (atomically) and close it; returns the file name."""
        assert name in REPORT_FILES, name  # a new plot must be listed for the up-front check
        fig.tight_layout()
        try:
            with atomic_file(self.out_dir / name, overwrite=self.overwrite, binary=True) as f:
                fig.savefig(f, format="png", dpi=90)
        finally:
            plt.close(fig)
        return name


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[Any]:
    return con.execute(sql, params or []).fetchall()


def _latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = _rows(con, "SELECT run_id FROM runs ORDER BY started_at DESC NULLS LAST LIMIT 1")
    return rows[0][0] if rows else None


def _emissions_over_steps(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Emissions over steps, by kind")
    rows = _rows(con, "SELECT step, kind, n FROM v_emissions_by_step WHERE run_id = ? "
                      "ORDER BY step", [rep.run_id])
    if not rows:
        section.note = "No emissions for this run."
        return section
    series: dict[str, dict[int, int]] = defaultdict(dict)
    for step, kind, n in rows:
        series[kind][step] = n
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind, points in sorted(series.items()):
        steps = sorted(points)
        ax.plot(steps, [points[s] for s in steps], marker="o", label=kind)
    ax.set_xlabel("step")
    ax.set_ylabel("emissions")
    ax.legend()
    section.image = rep.save(fig, "emissions_over_steps.png")
    return section


def _duplicate_rate(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Near-duplicate rate (MinHash, Jaccard >= 0.9)")
    rows = _rows(con, "SELECT source, source_id, kind, n, n_duplicates, duplicate_rate "
                      "FROM v_duplicate_rate WHERE source = 'job' OR source_id = ? "
                      "ORDER BY source, source_id, kind", [rep.run_id])
    if not rows:
        section.note = "Nothing to measure yet."
        return section
    labels = [f"{r[0]} {r[1][-6:]} {r[2]}" for r in rows]
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.35 * len(rows) + 1)))
    ax.barh(labels, [r[5] for r in rows], color="tab:orange")
    ax.set_xlabel("share flagged as near-duplicate")
    ax.set_xlim(0, 1)
    section.image = rep.save(fig, "duplicate_rate.png")
    section.table = (["source", "id", "kind/task", "n", "duplicates", "rate"], rows)
    return section


def _graph(con: duckdb.DuckDBPyConnection, rep: Report) -> nx.Graph:
    if rep.run_id:
        edges = _rows(con, "SELECT r.src, r.dst FROM relations r "
                           "JOIN run_agents a ON a.persona_id = r.src AND a.run_id = ? "
                           "JOIN run_agents b ON b.persona_id = r.dst AND b.run_id = ?",
                      [rep.run_id, rep.run_id])
        nodes = [r[0] for r in _rows(con, "SELECT persona_id FROM run_agents WHERE run_id = ?",
                                     [rep.run_id])]
    else:
        edges = _rows(con, "SELECT src, dst FROM relations")
        nodes = []
    graph = nx.Graph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    return graph


def _degree_distribution(graph: nx.Graph, rep: Report) -> Section:
    section = Section("Degree distribution of the persona graph")
    if graph.number_of_nodes() == 0:
        section.note = "No relationship graph."
        return section
    degrees = [d for _, d in graph.degree()]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(degrees, bins=range(0, max(degrees) + 2), color="tab:blue", align="left")
    ax.set_xlabel("degree (distinct related personas)")
    ax.set_ylabel("personas")
    section.image = rep.save(fig, "degree_distribution.png")
    section.note = (f"{graph.number_of_nodes()} personas, {graph.number_of_edges()} edges, "
                    f"mean degree {sum(degrees) / len(degrees):.2f}.")
    return section


def _graph_drawing(graph: nx.Graph, rep: Report) -> Section:
    section = Section("Relationship graph")
    if graph.number_of_nodes() == 0:
        section.note = "No relationship graph."
        return section
    drawn = graph
    if graph.number_of_nodes() > MAX_DRAWN_NODES:
        rng = random.Random(rep.seed)
        drawn = graph.subgraph(rng.sample(sorted(graph.nodes), MAX_DRAWN_NODES))
        section.note = (f"A random sample of {MAX_DRAWN_NODES} of {graph.number_of_nodes()} "
                        "personas and the edges among them.")
    layout = nx.spring_layout(drawn, seed=rep.seed, iterations=30)
    fig, ax = plt.subplots(figsize=(7, 7))
    nx.draw_networkx_edges(drawn, layout, ax=ax, alpha=0.3, width=0.6)
    nx.draw_networkx_nodes(drawn, layout, ax=ax, node_size=12,
                           node_color=[d for _, d in drawn.degree()], cmap="viridis")
    ax.set_axis_off()
    section.image = rep.save(fig, "relationship_graph.png")
    return section


def _diversity(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    label = embedder_label(rep.embedder)
    section = Section(f"Diversity: persona similarity vs output similarity ({label})")
    results = diversity_table(con, rep.embedder, run_id=rep.run_id, seed=rep.seed)
    if not results:
        section.note = "No items to analyse."
        return section
    table = []
    fig, ax = plt.subplots(figsize=(7, 5))
    for group, result in results.items():
        if len(result.pairs.persona):
            ax.scatter(result.pairs.persona, result.pairs.output, s=8, alpha=0.5, label=group)
        dup_rate = sum(it.is_duplicate for it in result.items) / len(result.items)
        table.append((*summary_row(result.summary), round(dup_rate, 4)))
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"persona similarity (cosine, {label})")
    ax.set_ylabel(f"output similarity (cosine, {label})")
    ax.set_xlim(min(0.0, ax.get_xlim()[0]), 1)
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1)
    if any(len(r.pairs.persona) for r in results.values()):
        ax.legend(fontsize=8)
    section.image = rep.save(fig, "diversity.png")
    section.table = ([*SUMMARY_HEADER, "near-dup rate"], table)
    lexical = (" The hash embedder hashes words and word pairs: its similarity is lexical "
               "(shared words), not meaning; pass --embedder local or openai:<model> for the "
               "paper's embedding analysis." if isinstance(rep.embedder, HashEmbedder) else "")
    skipped = sum(r.summary.skipped for r in results.values())
    scripts = (f" {skipped} sampled pairs had a text in a script {rep.embedder.name} was not "
               "trained on and were skipped." if skipped else "")
    section.note = (f"Up to {DEFAULT_PAIRS} random pairs within each kind/task, cosine of "
                    f"{label} embeddings.{lexical}{scripts}")
    return section


def _survey(con: duckdb.DuckDBPyConnection, rep: Report) -> Section | None:
    """Survey answers per step; no section when there are none (or no ``survey_answers`` table)."""
    columns = {r[0] for r in _rows(con, "SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'survey_answers'")}
    if not columns:
        return None
    section = Section("Survey answers over time")
    if "step" not in columns:
        section.note = "survey_answers has no step column; nothing plotted."
        return section
    where = "WHERE run_id = ?" if "run_id" in columns and rep.run_id else ""
    params = [rep.run_id] if where else []
    try:
        rows = _rows(con, f"SELECT step, count(*) FROM survey_answers {where} GROUP BY step "
                          "ORDER BY step", params)
    except duckdb.Error as exc:
        section.note = f"survey_answers could not be read ({str(exc).splitlines()[0]})."
        return section
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar([r[0] for r in rows], [r[1] for r in rows], color="tab:green")
    ax.set_xlabel("step")
    ax.set_ylabel("answers")
    section.image = rep.save(fig, "survey_answers.png")
    return section


def _html(rep: Report) -> str:
    esc = html.escape
    title = f"personahub report — run {rep.run_id}" if rep.run_id else "personahub report"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "</style></head><body>", f"<h1>{esc(title)}</h1>"]
    for section in rep.sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.image:
            parts.append(f"<img src='{esc(section.image)}' alt='{esc(section.title)}'>")
        if section.note:
            parts.append(f"<p>{esc(section.note)}</p>")
        if section.table:
            header, rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
                         + "</tr>")
            for row in rows:
                parts.append("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path, *,
                 run_id: str | None = None, seed: int = 0, overwrite: bool = False,
                 embedder: Embedder | str = "hash") -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; returns the index path.

    ``out_dir`` is created if missing (not its parents); files already in it are replaced only
    with ``overwrite``. ``embedder`` (a spec for ``make_embedder`` or an embedder) judges the
    diversity section's pairs; the default ``hash`` is labelled lexical.
    """
    from personahub.personas.errors import PersonahubError

    install_views(con)
    if run_id is not None and not _rows(con, "SELECT 1 FROM runs WHERE run_id = ?", [run_id]):
        raise PersonahubError(f"--run {run_id}: not found in the database")
    if isinstance(embedder, str):
        embedder = make_embedder(embedder)
    rep = Report(Path(out_dir), run_id or _latest_run(con), seed, overwrite, embedder)
    rep.out_dir.mkdir(exist_ok=True)
    graph = _graph(con, rep)
    rep.sections += [_emissions_over_steps(con, rep), _duplicate_rate(con, rep),
                     _degree_distribution(graph, rep), _graph_drawing(graph, rep),
                     _diversity(con, rep)]
    survey = _survey(con, rep)
    if survey is not None:
        rep.sections.append(survey)
    index = rep.out_dir / "index.html"
    text = _html(rep)
    with atomic_file(index, overwrite=overwrite) as f:
        f.write(text)
    return index
