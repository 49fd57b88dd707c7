"""CLI command ``personahub judge`` (registered by ``personahub/cli/app.py``): rate a synthesis job's items
or a run's emissions against their kind's criteria and print the validity rate with its 95%
Wilson interval, overall and per criterion (``pipelines/judge.py``, ``analysis/judgments.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from personahub.cli.common import (
    ConcurrencyOption,
    DbOption,
    JsonOption,
    LlmOption,
    MaxFailedShareOption,
    MaxTokensOption,
    ModelFlags,
    OfflineLatencyOption,
    RpsOption,
    StructuredOption,
    TemperatureOption,
    TimeoutOption,
    TopPOption,
    banner,
    command_client,
    emit_job_json,
    job_progress,
    one_line_errors,
    out,
    started,
)
from personahub.core.failures import DEFAULT_MAX_FAILED_SHARE
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED


@one_line_errors
def judge(
    job: Annotated[str | None, typer.Option(help="Judge this synthesis job's items.")] = None,
    run: Annotated[str | None, typer.Option(help="Judge this run's emissions.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only items of this task / emission kind.")] = None,
    sample: Annotated[int | None, typer.Option(
        min=1, help="Judge at most N items: a uniform sample seeded by --seed (default: all).")] = None,
    seed: Annotated[int, typer.Option(
        min=0, max=MAX_SEED, help="Seed: the sample and the offline engine.")] = 0,
    db: DbOption = Path(DEFAULT_DB),
    llm: LlmOption = None,
    concurrency: ConcurrencyOption = 16,
    timeout: TimeoutOption = 60.0,
    offline_latency: OfflineLatencyOption = 0.0,
    batch_size: Annotated[int, typer.Option(min=1, help="Judgments per transaction.")] = 32,
    rps: RpsOption = None,
    structured: StructuredOption = "auto",
    max_tokens: MaxTokensOption = None,
    temperature: TemperatureOption = None,
    top_p: TopPOption = None,
    max_failed_share: MaxFailedShareOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask a model whether each item meets its kind's criteria; print the validity rate with a
    95% interval. Re-running the same judge skips the items it has rated."""
    from personahub.agents.llm.client import resolve_spec
    from personahub.analysis.judgments import validity, validity_lines
    from personahub.core.store import connect
    from personahub.pipelines.judge import JudgeOptions, run_judge

    flags = ModelFlags(structured, max_tokens, temperature, top_p)
    spec = resolve_spec(llm)
    options = JudgeOptions(job=job, run=run, kind=kind, sample=sample, seed=seed, db=str(db),
                           llm=spec, concurrency=concurrency, timeout_s=timeout,
                           batch_size=batch_size, rps=rps, **flags.settings(),
                           max_failed_share=(DEFAULT_MAX_FAILED_SHARE if max_failed_share is None
                                             else max_failed_share))
    client = command_client(spec, seed, concurrency, timeout, offline_latency, rps=rps, flags=flags,
                            announce=False)

    def on_ready(judge_id: str) -> None:
        banner(client)
        started("judge", judge_id, db)

    with job_progress(client) as bar:
        handle = bar.add_task("judging", total=sample)
        summary = run_judge(options, client=client, on_ready=on_ready,
                            progress=lambda _, done, total: bar.update(
                                handle, completed=done, total=total))
    con = connect(db, read_only=True)
    try:
        figures = validity(con, summary.judge_id)
    finally:
        con.close()
    target = f"{'job' if summary.target_kind == 'synthesis' else 'run'} {summary.target_id}"
    calls = ", ".join(f"{k}={v}" for k, v in summary.calls.items()) or "none"
    out.print(f"judge {summary.judge_id} of {target}: {summary.judged} items judged "
              f"({summary.skipped_done} already judged, {summary.failed} failed) in {db}; "
              f"model calls: {calls}", highlight=False, soft_wrap=True)
    if figures is not None:
        for line in validity_lines(figures):
            out.print(line, highlight=False, soft_wrap=True)
    if summary.failed:
        out.print("run the same command again to retry the failed items", highlight=False,
                  soft_wrap=True)
    if as_json:
        emit_job_json("judge", db, job_id=summary.judge_id, id_key="judge_id",
                      counts={"selected": summary.selected, "judged": summary.judged,
                              "already_judged": summary.skipped_done, "failed": summary.failed},
                      target={"kind": summary.target_kind, "id": summary.target_id},
                      validity=None if figures is None else figures.valid.as_dict())
