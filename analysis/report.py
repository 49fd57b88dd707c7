"""An HTML report with PNG plots of a simulation run or a synthesis job (matplotlib, Agg).

Sections without data say so instead of failing; chart data is computed apart from drawing,
so tests can check it without reading a PNG.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import matplotlib
import matplotlib.ticker as mticker
import networkx as nx

from personahub.analysis.diversity import SUMMARY_HEADER, embedder_label, summary_row
from personahub.analysis.diversity_table import DEFAULT_PAIRS, diversity_table
from personahub.analysis.figures import subplots
from personahub.analysis.judgments import OFFLINE_NOTE, latest_validity
from personahub.analysis.preview import (
    OUTLIERS,
    REPORT_SAMPLES,
    Preview,
    Sample,
    clip,
    job_preview,
    outliers,
    run_preview,
)
from personahub.analysis.report_data import (
    NO_EMISSION,
    Event,
    SurveyShares,
    agent_roles,
    neighbourhood_sample,
    role_counts,
    run_events,
    survey_shares,
)
from personahub.analysis.report_header import Facts, job_facts, run_facts
from personahub.analysis.views import install_views
from personahub.core.call_log import failed_call_groups
from personahub.core.jobs_store import latest_job_id
from personahub.core.outputs import atomic_file, staged_folder
from personahub.models.embedders import make_embedder
from personahub.personas.embedding import Embedder, HashEmbedder
from personahub.personas.store import relation_edges
from personahub.sim.run_queries import agent_persona_ids
from personahub.sim.store import archetype_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_DRAWN_NODES = 300
# Every file a report may write (checked up front so --force means something).
REPORT_FILES = ("index.html", "emissions_over_steps.png", "duplicate_rate.png",
                "degree_distribution.png", "relationship_graph.png", "diversity.png",
                "survey_answers.png")
EVENT_COLOUR = "tab:purple"
# Text reaches matplotlib as written: user text like "$5 to $10" would otherwise become mathtext
# and fail on "$\\x$". write_report draws every chart inside this style.
LITERAL_TEXT: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}


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
    job_id: str | None = None
    facts: Facts = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def save(self, fig: Figure, name: str) -> str:
        """Write a figure as PNG (atomically) and close it; returns the file name."""
        assert name in REPORT_FILES, name  # a new plot must be listed for the up-front check
        fig.tight_layout()
        try:
            with atomic_file(self.out_dir / name, overwrite=self.overwrite, binary=True) as f:
                fig.savefig(f, format="png", dpi=90)
        finally:
            fig.clear()
        return name


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[Any]:
    return con.execute(sql, params or []).fetchall()


def _latest_run(con: duckdb.DuckDBPyConnection) -> str | None:
    return latest_job_id(con, "run")


def _mark_events(ax: Axes, events: list[Event]) -> None:
    """Dashed lines just before each event's step, labelled E1, E2, ... at the top."""
    for event in events:
        ax.axvline(event.step - 0.45, color=EVENT_COLOUR, linestyle="--", linewidth=1)
        ax.annotate(event.label, (event.step - 0.45, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", color=EVENT_COLOUR, fontsize=8)


def _events_note(events: list[Event]) -> str:
    if not events:
        return ""
    return " Events (dashed lines, delivered at the start of their step): " + "; ".join(
        f"{e.label} step {e.step}, {e.recipients} recipients"
        f"{'' if e.source == 'scenario' else f', injected from the {e.source}'}: {e.text.rstrip('.')}"
        for e in events) + "."


def _emissions_over_steps(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Emissions over steps, by kind")
    rows = _rows(con, "SELECT step, task, n FROM v_emissions_by_step WHERE run_id = ? "
                      "ORDER BY step", [rep.run_id])
    if not rows:
        section.note = "No emissions for this run."
        return section
    series: dict[str, dict[int, int]] = defaultdict(dict)
    for step, kind, n in rows:
        series[kind][step] = n
    fig, ax = subplots(figsize=(8, 4))
    for kind, points in sorted(series.items()):
        steps = sorted(points)
        ax.plot(steps, [points[s] for s in steps], marker="o", label=kind)
    _mark_events(ax, rep.events)
    ax.set_xlabel("step")
    ax.set_ylabel("emissions")
    ax.set_ylim(bottom=0, top=max(n for _, _, n in rows) * 1.15)
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    section.image = rep.save(fig, "emissions_over_steps.png")
    section.note = _events_note(rep.events).strip()
    return section


def duplicate_axis_limit(rates: list[float]) -> float:
    """Return the x-axis end for duplicate rates: room for the largest label, between 1% and 100%."""
    return min(1.0, max(0.01, max(rates, default=0.0) * 1.35))


def _archetypes(con: duckdb.DuckDBPyConnection, run_id: str) -> Section | None:
    method, rows = archetype_table(con, run_id)
    if not rows:
        return None
    section = Section("Archetypes")
    total = sum(size for _, size, _, _ in rows)
    section.note = (f"{len(rows)} archetypes over {total} agents ({method}). Surveys and "
                    "unaddressed actions were asked once per archetype, through its "
                    "representative; each member's answer was drawn from the stated shares.")
    section.table = (["archetype", "agents", "representative persona", "members' attributes"],
                     rows)
    return section


def _duplicate_rate(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Near-duplicate rate (MinHash, Jaccard >= 0.9)")
    if rep.job_id is not None:
        rows = _rows(con, "SELECT source, source_id, task, n, n_duplicates, duplicate_rate "
                          "FROM v_duplicate_rate WHERE source = 'job' AND source_id = ? "
                          "ORDER BY task", [rep.job_id])
    else:  # a synthesis job in the same file is not this run's
        rows = _rows(con, "SELECT source, source_id, task, n, n_duplicates, duplicate_rate "
                          "FROM v_duplicate_rate WHERE source = 'run' AND source_id = ? "
                          "ORDER BY source, source_id, task", [rep.run_id])
    if not rows:
        section.note = "Nothing to measure yet."
        return section
    labels = [f"{r[0]} {r[1][-6:]} {r[2]}" for r in rows]
    rates = [float(r[5]) for r in rows]
    fig, ax = subplots(figsize=(8, max(2.5, 0.4 * len(rows) + 1.2)))
    bars = ax.barh(labels, rates, color="tab:orange")
    ax.bar_label(bars, labels=[f"{r[5]:.1%} ({r[4]}/{r[3]})" for r in rows], padding=3,
                 fontsize=8)
    ax.invert_yaxis()
    limit = duplicate_axis_limit(rates)
    ax.set_xlim(0, limit)
    ax.xaxis.set_major_formatter(mticker.PercentFormatter(1.0, decimals=1 if limit < 0.1 else 0))
    ax.set_xlabel("share flagged as near-duplicate (axis scaled to the largest rate)")
    section.image = rep.save(fig, "duplicate_rate.png")
    section.table = (["source", "id", "kind/task", "n", "duplicates", "rate"], rows)
    return section


def _graph(con: duckdb.DuckDBPyConnection, rep: Report) -> nx.Graph:
    if rep.run_id:
        nodes = agent_persona_ids(con, rep.run_id)
        edges = relation_edges(con, nodes)
    else:
        edges, nodes = relation_edges(con), []
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
    fig, ax = subplots(figsize=(8, 4))
    ax.hist(degrees, bins=range(0, max(degrees) + 2), color="tab:blue", align="left")
    ax.set_xlabel("degree (distinct related personas)")
    ax.set_ylabel("personas")
    ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    section.image = rep.save(fig, "degree_distribution.png")
    section.note = (f"{graph.number_of_nodes()} personas, {graph.number_of_edges()} edges, "
                    f"mean degree {sum(degrees) / len(degrees):.2f}.")
    return section


def _graph_drawing(con: duckdb.DuckDBPyConnection, graph: nx.Graph, rep: Report) -> Section:
    section = Section("Relationship graph")
    if graph.number_of_nodes() == 0:
        section.note = "No relationship graph."
        return section
    nodes, starts = neighbourhood_sample(graph, MAX_DRAWN_NODES)
    drawn = graph.subgraph(nodes)
    roles = agent_roles(con, rep.run_id)
    counts = role_counts(nodes, roles)
    kinds = sorted(k for k in counts if k != NO_EMISSION)
    palette = matplotlib.colormaps["tab10"]
    colours = {kind: palette(i % 10) for i, kind in enumerate(kinds)}
    colours[NO_EMISSION] = (0.75, 0.75, 0.75, 1.0)
    layout = nx.spring_layout(drawn, seed=rep.seed, iterations=50)
    fig, ax = subplots(figsize=(8, 7))
    nx.draw_networkx_edges(drawn, layout, ax=ax, alpha=0.25, width=0.6)
    for role in [*kinds, NO_EMISSION]:
        members = [n for n in drawn.nodes if roles.get(n, NO_EMISSION) == role]
        if members:
            nx.draw_networkx_nodes(drawn, layout, nodelist=members, ax=ax, node_color=[colours[role]],
                                   node_size=[18 + 6 * drawn.degree(n) for n in members],
                                   edgecolors="white", linewidths=0.4,
                                   label=f"{role if rep.run_id else 'persona'} ({counts[role]})")
    ax.legend(title="what the agent did most" if rep.run_id else None, fontsize=8,
              title_fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_axis_off()
    section.image = rep.save(fig, "relationship_graph.png")
    what = ("Colour: the emission kind each agent made most in this run (grey: none); size: degree."
            if rep.run_id else "Size: degree.")
    if starts:
        section.note = (f"{len(nodes)} of {graph.number_of_nodes()} personas: the breadth-first "
                        f"neighbourhood of the best-connected persona ({starts[0]}, degree "
                        f"{graph.degree(starts[0])})"
                        + (f" and of {len(starts) - 1} more" if len(starts) > 1 else "")
                        + f", with the edges among them. {what}")
    else:
        section.note = f"All {len(nodes)} personas and their edges. {what}"
    return section


def _diversity(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    label = embedder_label(rep.embedder)
    section = Section(f"Diversity: persona similarity vs output similarity ({label})")
    results = diversity_table(con, rep.embedder, run_id=rep.run_id, job_id=rep.job_id,
                              all_jobs=False, seed=rep.seed)
    if not results:
        section.note = "No items to analyse."
        return section
    table = []
    fig, ax = subplots(figsize=(7, 5))
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


def _share_colours(survey: SurveyShares) -> list[object]:
    """Options on a red-to-green scale: a scale's low end red, a choice survey's first option green."""
    cmap = matplotlib.colormaps["RdYlGn"]
    k = max(1, len(survey.options) - 1)
    positions = [i / k for i in range(len(survey.options))]
    if survey.kind == "choice":
        positions = [1 - p for p in positions]
    return [cmap(0.08 + 0.84 * p) for p in positions]


def _plot_survey(ax: Axes, survey: SurveyShares, rep: Report, last_step: int) -> None:
    shares = survey.shares()
    bottoms = [0.0] * len(survey.steps)
    for j, (option, colour) in enumerate(zip(survey.options, _share_colours(survey), strict=True)):
        heights = [row[j] for row in shares]
        bars = ax.bar(survey.steps, heights, bottom=bottoms, width=0.6, color=colour,
                      edgecolor="white", linewidth=0.5, label=option)
        ax.bar_label(bars, labels=[f"{h:.0%}" if h >= 0.07 else "" for h in heights],
                     label_type="center", fontsize=7)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    _mark_events(ax, [e for e in rep.events if e.step <= last_step])
    ax.set_xlim(0.4, last_step + 0.6)
    ax.set_xticks(range(1, last_step + 1))
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(mticker.PercentFormatter(1.0))
    ax.set_ylabel("share of answers")
    ax.set_title(f"{survey.survey_id}: {survey.question}", fontsize=9, loc="left", wrap=True)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False,
              reverse=True)


def _survey(con: duckdb.DuckDBPyConnection, rep: Report) -> Section | None:
    columns = {r[0] for r in _rows(con, "SELECT column_name FROM information_schema.columns "
                                        "WHERE table_name = 'survey_answers'")}
    if not columns:
        return None
    section = Section("Survey answers over time (shares per step)")
    if "step" not in columns:
        section.note = "survey_answers has no step column; nothing plotted."
        return section
    try:
        surveys = survey_shares(con, rep.run_id)
    except duckdb.Error as exc:
        section.note = f"survey_answers could not be read ({str(exc).splitlines()[0]})."
        return section
    if not surveys:
        return None
    last_step = max([s for survey in surveys for s in survey.steps]
                    + [e.step for e in rep.events])
    fig, axes = subplots(len(surveys), 1, figsize=(8, 3.4 * len(surveys)), squeeze=False)
    for ax, survey in zip(axes[:, 0], surveys, strict=True):
        _plot_survey(ax, survey, rep, last_step)
    axes[-1, 0].set_xlabel("step")
    section.image = rep.save(fig, "survey_answers.png")
    section.table = (["survey", "step", "answers", "shares"],
                     [(s.survey_id, step, total, ", ".join(
                         f"{o} {share:.0%}" for o, share in zip(s.options, row, strict=True)))
                      for s in surveys
                      for step, total, row in zip(s.steps, s.totals(), s.shares(), strict=True)])
    section.note = ("Each bar is one step's answers as shares of that step's answers (they sum to "
                    "100%)." + _events_note(rep.events) + _profiles_note(con, rep.run_id))
    return section


def _profiles_note(con: duckdb.DuckDBPyConnection, run_id: str | None) -> str:
    """Which survey profiles answered which surveys (run --survey-profile), as a sentence."""
    from personahub.sim.run_queries import survey_profiles

    used = survey_profiles(con, run_id)
    if not used:
        return ""
    return " Answered through a calibration's survey profile (each agent's answer drawn from its " \
           "distribution): " + "; ".join(f"{s}: {', '.join(p)}" for s, p in used.items()) + "."


def _failures(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Failures")
    owner = rep.job_id or rep.run_id
    calls = failed_call_groups(con, owner, limit=20)
    column = "job_id" if rep.job_id else "run_id"
    refused = _rows(con, f"SELECT task, reason, sum(n) FROM v_rejected WHERE {column} = ? "
                         "GROUP BY ALL ORDER BY 3 DESC, 1, 2 LIMIT 20", [owner])
    rows = [("model call", p, s, e, n) for p, s, e, n in calls]
    rows += [("quality gate", k, "rejected", r, n) for k, r, n in refused]
    if not rows:
        section.note = "No failed model calls and nothing refused by the quality gate."
        return section
    section.table = (["what", "purpose/kind", "status", "error/reason", "count"], rows)
    section.note = "Failed attempts (a retried call that then succeeded counts here too)."
    return section


def _items_per_task(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Items per task")
    rows = _rows(con, "SELECT task, prompting, n, items, duplicates, solved FROM v_synth_jobs "
                      "WHERE job_id = ?", [rep.job_id])
    refused = _rows(con, "SELECT coalesce(sum(n), 0) FROM v_rejected WHERE source = 'synthesis' "
                         "AND job_id = ?", [rep.job_id])[0][0]
    section.table = (["task", "prompting", "personas asked", "items", "near-duplicates",
                      "solved", "refused by the quality gate"],
                     [(*r, refused) for r in rows])
    return section


SAMPLE_PERSONA_CHARS = 300
SAMPLE_OUTPUT_CHARS = 1200  # show ID prints an output whole


def _preview_of(con: duckdb.DuckDBPyConnection, rep: Report, per_kind: int) -> Preview | None:
    if rep.job_id is not None:
        return job_preview(con, rep.job_id, per_kind)
    return run_preview(con, rep.run_id, per_kind) if rep.run_id is not None else None


def _output_cell(sample: Sample) -> str:
    text = clip(sample.output, SAMPLE_OUTPUT_CHARS)
    return f"[near-duplicate of {sample.duplicate_of}] {text}" if sample.is_duplicate else text


def _samples(con: duckdb.DuckDBPyConnection, rep: Report) -> list[Section]:
    preview = _preview_of(con, rep, REPORT_SAMPLES)
    if preview is None or not preview.samples:
        return [Section("Samples", note="No items to show.")]
    sections = []
    for kind in preview.kinds():
        rows = [(s.item_id, clip(s.source, SAMPLE_PERSONA_CHARS), _output_cell(s))
                for s in preview.samples if s.kind == kind]
        total = preview.totals.get(kind, len(rows))
        sections.append(Section(
            f"Samples: {kind}",
            note=f"{len(rows)} of {total} {kind} outputs beside the persona that wrote each, "
                 "picked by a stable hash of their ids (near-duplicates last). "
                 "personahub show ID prints one whole.",
            table=(["id", "persona", "output"], rows)))
    return sections


def _outliers(con: duckdb.DuckDBPyConnection, rep: Report) -> Section:
    section = Section("Outliers")
    found = outliers(con, job_id=rep.job_id, run_id=None if rep.job_id else rep.run_id)
    groups = [("longest", found.longest), ("shortest", found.shortest),
              ("near-duplicate", found.duplicates)]
    rows = [(which, s.kind, s.item_id, clip(s.source, SAMPLE_PERSONA_CHARS), _output_cell(s),
             s.length) for which, group in groups for s in group]
    if not rows:
        section.note = "No items to show."
        return section
    section.table = (["which", "kind/task", "id", "persona", "output", "characters"], rows)
    dups = ("none flagged" if not found.duplicates
            else f"up to {OUTLIERS} of those flagged, each with the one it repeats")
    section.note = (f"The {OUTLIERS} longest and {OUTLIERS} shortest outputs of every kind "
                    f"together, and near-duplicates (MinHash, Jaccard >= 0.9): {dups}.")
    return section


def _validity(con: duckdb.DuckDBPyConnection, owner_id: str | None) -> Section | None:
    figures = latest_validity(con, owner_id) if owner_id else None
    if figures is None:
        return None
    section = Section("Validity (personahub judge)")
    section.note = (f"judge {figures.judge_id}, model {figures.model}: 95% Wilson intervals."
                    + (f" Note: {OFFLINE_NOTE}." if figures.offline else ""))
    low, high = figures.valid.interval
    rows = [("valid", figures.valid.yes, figures.valid.n, f"{100 * figures.valid.value:.1f}%",
             f"{100 * low:.1f}–{100 * high:.1f}%")]
    for name, rate in figures.criteria.items():
        low, high = rate.interval
        rows.append((name, rate.yes, rate.n, f"{100 * rate.value:.1f}%",
                     f"{100 * low:.1f}–{100 * high:.1f}%"))
    section.table = (["criterion", "yes", "judged", "rate", "95% interval"], rows)
    return section


def _header_html(rep: Report) -> list[str]:
    esc = html.escape
    if not rep.facts:
        return ["<p>No run in the database (for a synthesis job's report: --job ID).</p>"]
    return (["<table class='facts'>"]
            + [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rep.facts]
            + ["</table>"])


def _html(rep: Report) -> str:
    esc = html.escape
    if rep.job_id:
        title = f"personahub report — synthesis job {rep.job_id}"
    else:
        title = f"personahub report — run {rep.run_id}" if rep.run_id else "personahub report"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:62em;margin:auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
             "table.facts th{text-align:left;background:#f4f4f4;font-weight:normal}"
             "td{vertical-align:top}img{max-width:100%}</style></head><body>", f"<h1>{esc(title)}</h1>"]
    parts += _header_html(rep)
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
                 run_id: str | None = None, job_id: str | None = None, seed: int = 0,
                 overwrite: bool = False, embedder: Embedder | str = "hash") -> Path:
    """Write index.html and its PNGs into a folder; returns the index path.

    A run's report (default: the latest run) or a synthesis job's. Drawn into a staged folder
    first, so a failure half-way leaves the folder as it was.
    """
    from personahub.core.errors import PersonahubError, UsageError

    if run_id is not None and job_id is not None:
        raise UsageError("--run and --job: give one (a report is of a run or of a job)")
    install_views(con)
    if run_id is not None and not _rows(con, "SELECT 1 FROM v_runs WHERE run_id = ?", [run_id]):
        raise PersonahubError(f"--run {run_id}: not found in the database")
    if job_id is not None and not _rows(con, "SELECT 1 FROM v_synth_jobs WHERE job_id = ?",
                                        [job_id]):
        raise PersonahubError(f"--job {job_id}: not found in the database")
    if run_id is None and job_id is None:  # the latest run; with none, the latest synthesis job
        run_id = _latest_run(con)
        job_id = None if run_id is not None else latest_job_id(con, "synthesis")
        if run_id is None and job_id is None:
            raise PersonahubError("nothing to report: the database holds no run and no synthesis "
                                  "job (personahub run SCENARIO, or personahub synthesize TASK)")
    if isinstance(embedder, str):
        embedder = make_embedder(embedder)
    run = run_id
    out_dir = Path(out_dir)
    with staged_folder(out_dir, overwrite=overwrite, names=REPORT_FILES) as staged, \
            matplotlib.rc_context(LITERAL_TEXT):
        _write_sections(con, Report(staged, run, seed, False, embedder, job_id=job_id))
    return out_dir / "index.html"


def _write_sections(con: duckdb.DuckDBPyConnection, rep: Report) -> None:
    job_id, run = rep.job_id, rep.run_id
    if job_id is not None:
        rep.facts = job_facts(con, job_id)
        validity = _validity(con, job_id)
        rep.sections += [_items_per_task(con, rep), *_samples(con, rep), _outliers(con, rep),
                         *([validity] if validity else []),
                         _failures(con, rep), _duplicate_rate(con, rep), _diversity(con, rep)]
    else:
        if run is not None:
            rep.facts = run_facts(con, run)
            rep.events = run_events(con, run)
        survey = _survey(con, rep)
        graph = _graph(con, rep)
        validity = _validity(con, run)
        archetypes = _archetypes(con, run) if run is not None else None
        rep.sections += [*([survey] if survey is not None else []),
                         *([archetypes] if archetypes is not None else []),
                         *([validity] if validity is not None else []),
                         _emissions_over_steps(con, rep),
                         *(_samples(con, rep) + [_outliers(con, rep)] if run is not None else []),
                         *([_failures(con, rep)] if run is not None else []),
                         _duplicate_rate(con, rep), _degree_distribution(graph, rep),
                         _graph_drawing(con, graph, rep), _diversity(con, rep)]
    with atomic_file(rep.out_dir / "index.html", overwrite=False) as f:
        f.write(_html(rep))
