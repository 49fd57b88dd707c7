"""``personahub personas sample-population``: draw a seeded population matching given shares.

Without ``--llm`` no model is called: each person's text is written from a template
(``attributes.text_origin`` is ``template``). The people go into the hub (``--db``, one
transaction) or, with ``--out``, to a JSONL/CSV attribute table that ``personas import`` reads
back. With ``--llm`` the same people's texts are written by the model, one structured call per
person checked against the attributes (``pipelines/population_write.py``, a job of the kernel:
``personahub resume ID`` goes on with an interrupted one).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from personahub.cli.common import (
    ConcurrencyOption,
    DbOption,
    LlmOption,
    TimeoutOption,
    banner,
    console,
    job_progress,
    one_line_errors,
    out,
    started,
    unreachable,
)
from personahub.core.errors import PersonahubError
from personahub.core.outputs import FORCE_HELP, atomic_file, check_output
from personahub.core.store import DEFAULT_DB


def _write_table(path: Path, personas: list[Any], force: bool) -> None:
    """The personas as an attribute table: JSONL (``.jsonl``) or CSV (``.csv``)."""
    suffix = path.suffix.lower()
    rows = [{"persona": p.text, **p.attributes} for p in personas]
    with atomic_file(path, overwrite=force) as f:
        if suffix == ".csv":
            columns = list(dict.fromkeys(k for row in rows for k in row))
            writer = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _error_lines(population: Any) -> list[str]:
    """Per attribute: the largest gap between a drawn share and its target."""
    from personahub.personas.population import marginal_errors

    lines = []
    for key, errors in marginal_errors(population.people, population.targets).items():
        value, gap = max(errors.items(), key=lambda item: abs(item[1]))
        lines.append(f"  {key}: {len(errors)} values, largest gap {100 * abs(gap):.3f} "
                     f"percentage points ({key}={value})")
    return lines


@one_line_errors
def personas_sample_population(
    marginals: Annotated[Path | None, typer.Option(
        "--marginals", help="Shares per attribute: CSV attribute,value,share (or count/weight) "
                            'or JSON {"sex": {"female": 0.52, ...}} (docs/personas.md).')] = None,
    joint: Annotated[Path | None, typer.Option(
        "--joint", help="A joint table: CSV with one column per attribute and share (or "
                        "count/weight); with --marginals it is raked (IPF) to them.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", min=1, max=10_000_000,
                                   help="How many people to draw.")] = 1000,
    seed: Annotated[int, typer.Option(help="Sampling seed (same inputs and seed: same people).")] = 0,
    db: DbOption = Path(DEFAULT_DB),
    output: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the people to this .jsonl or .csv attribute table instead "
                            "of the hub.")] = None,
    force: Annotated[bool, typer.Option(help=FORCE_HELP)] = False,
    llm: LlmOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Draw a seeded population whose attribute shares match --marginals (and/or --joint).

    Each person's text comes from a template (no model call), marked as such in its attributes
    (text_origin=template); with --llm a model writes it (one call per person, checked against
    the attributes; text_origin=model). Carve them with --carve population=<id> or --source
    population.
    """
    from personahub.personas.population import draw_population, template_personas
    from personahub.personas.population_files import read_joint, read_marginals

    if marginals is None and joint is None:
        raise typer.BadParameter("give --marginals FILE, --joint FILE or both",
                                 param_hint="--marginals")
    if output is not None:
        if output.suffix.lower() not in (".jsonl", ".csv"):
            raise PersonahubError(f"--out {output}: give a .jsonl or .csv file")
        check_output(output, db=db, force=force)
    if llm is not None:
        if output is not None:
            raise typer.BadParameter("--llm writes the people to the hub (--db), not --out",
                                     param_hint="--out")
        _write_with_model(marginals, joint, n, seed, db, llm, concurrency, timeout)
        return
    targets = read_marginals(marginals) if marginals is not None else None
    table = read_joint(joint) if joint is not None else None
    population = draw_population(n, seed=seed, marginals=targets, joint=table)
    personas = template_personas(population)
    if output is not None:
        _write_table(output, personas, force)
        where = str(output)
        added_text = f"{len(personas)} written"
    else:
        from personahub.core.store import connect, transaction
        from personahub.personas.store import upsert_personas

        con = connect(db)
        try:
            with transaction(con):
                added = upsert_personas(con, personas)
        finally:
            con.close()
        where = str(db)
        added_text = f"{added} new"
    out.print(f"population {population.population_id}: {n} people (seed {seed}) over "
              f"{', '.join(population.keys)}; {added_text} in {where}; text from a template "
              "(text_origin=template), no model call", highlight=False, soft_wrap=True)
    for line in _error_lines(population):
        console.print(line, highlight=False, soft_wrap=True)


def _banner(client: Any) -> None:
    banner(client)


def _write_with_model(marginals: Path | None, joint: Path | None, n: int, seed: int, db: Path,
                      llm: str, concurrency: Any, timeout: float) -> None:
    """The people drawn as without a model, their texts written by ``llm`` (a kernel job)."""
    from personahub import runtime
    from personahub.agents.llm.client import resolve_spec
    from personahub.pipelines.population_write import POPULATION_WRITE, WriteConfig

    config = WriteConfig(marginals=None if marginals is None else str(marginals),
                         joint=None if joint is None else str(joint), n=n, seed=seed,
                         llm=resolve_spec(llm), concurrency=concurrency, timeout_s=timeout)
    with job_progress() as bar:
        handle = bar.add_task("writing personas", total=n)
        result = runtime.run(POPULATION_WRITE, config, db, on_ready=_banner,
                             on_start=lambda job_id, _: started("population job", job_id, db),
                             warn=unreachable, progress=lambda _, done, total: bar.update(
                                 handle, completed=done, total=total))
    for line in POPULATION_WRITE.report(result.summary, db):
        out.print(line, highlight=False, soft_wrap=True)
