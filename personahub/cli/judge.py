"""CLI command personahub judge (registered by personahub/cli/app.py): rate a synthesis job's items
or a run's emissions against their kind's criteria and print the validity rate with its 95%
Wilson interval, overall and per criterion (pipelines/judge.py, analysis/judgments.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from personahub.cli.common import emit_job_json, one_line_errors, out, renamed_flag
from personahub.cli.engine import Engine, engine_options
from personahub.cli.job_running import (
    awaiting_results,
    banner,
    batch_progress,
    job_progress,
    started,
    unreachable,
)
from personahub.cli.options import DbOption, Shown, output_options
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED


@one_line_errors
@engine_options("model", "batch", "executor", batch_size=("Judgments", 32))
@output_options()
def judge(
    job: Annotated[str | None, typer.Option(help="Judge this synthesis job's items.")] = None,
    run: Annotated[str | None, typer.Option(help="Judge this run's emissions.")] = None,
    task: Annotated[str | None, typer.Option(
        help="Only items of this task (the output kind: instruction, ...).")] = None,
    sample: Annotated[int | None, typer.Option(
        min=1, help="Judge at most N items: a uniform sample seeded by --seed (default: all).")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed: the sample and the offline engine.")] = 0,
    db: DbOption = Path(DEFAULT_DB),
    kind: Annotated[str | None, typer.Option("--kind", hidden=True)] = None,
    *,
    shown: Shown,
    engine: Engine,
) -> None:
    """Ask a model whether each item meets its kind's criteria; print the validity rate with a
    95% interval. Re-running the same judge skips the items it has rated."""
    from personahub.analysis.judgments import validity, validity_lines
    from personahub.api import run_judge
    from personahub.cli.progress import LateCounts
    from personahub.core.store import connect
    from personahub.pipelines.judge import JUDGE, JudgeConfig

    # without --max-failed-share, JudgeConfig's default (the declared one)
    task = renamed_flag(task, kind, old="--kind", new="--task")
    config = JudgeConfig(job=job, run=run, task=task, sample=sample, seed=seed, db=str(db),
                         **engine.settings(llm=True), **engine.flags.settings(),
                         **engine.batching())
    counts = LateCounts()

    def on_ready(client: Any) -> None:
        counts.follow(client.stats)
        banner(client)

    def on_start(judge_id: str, resumed: bool) -> None:
        started("judge", judge_id, db)

    with job_progress(counts=counts) as bar, awaiting_results():
        handle = bar.add_task("judging", total=sample)
        summary = run_judge(config, on_ready=on_ready, on_start=on_start, warn=unreachable,
                            progress=batch_progress(bar, handle, "judging"))
    con = connect(db, read_only=True)
    try:
        figures = validity(con, summary.judge_id)
    finally:
        con.close()
    lines = JUDGE.report(summary, db)
    out.print(lines[0], highlight=False, soft_wrap=True)
    if figures is not None:
        for line in validity_lines(figures):
            out.print(line, highlight=False, soft_wrap=True)
    for line in lines[1:]:
        out.print(line, highlight=False, soft_wrap=True)
    if shown.json:
        emit_job_json("judge", db, job_id=summary.judge_id, id_key="judge_id",
                      counts={"selected": summary.selected, "judged": summary.judged,
                              "already_judged": summary.skipped_done, "failed": summary.failed},
                      target={"kind": summary.target_kind, "id": summary.target_id},
                      validity=None if figures is None else figures.valid.as_dict())
