"""CLI command personahub evaluate (registered by personahub/cli/app.py): hold out a
seeded test split of a synthesis job's items, have several solvers answer it, keep the items
enough of them agree on, and score models on those (pipelines/evaluate.py, issue 46)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from personahub.cli.common import one_line_errors, out
from personahub.cli.engine import Engine, engine_options
from personahub.cli.options import DbOption, resume_option
from personahub.core.plan_limits import MAX_SAMPLES
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import MAX_SEED


@one_line_errors
# --batch: each solver's, model's and judge's calls as provider batches (no --batch-file)
@engine_options("concurrency", "timeout_s", "executor", "batch", without=("batch_file",))
def evaluate(
    job: Annotated[str | None, typer.Option(
        help="The synthesis job whose items are evaluated.")] = None,
    solver: Annotated[list[str] | None, typer.Option(
        metavar="SPEC", help="A solver: any --llm spec; offline?seed=N is the offline engine with seed N; "
             "SPEC#answer or SPEC#cot gives it its own prompting (else --mode). Repeatable.")
    ] = None,
    model: Annotated[list[str] | None, typer.Option(
        metavar="SPEC",
        help="A model to score on the verified test items (any --llm spec, #answer or #cot "
             "as for --solver). Repeatable.")] = None,
    equivalence_judge: Annotated[str | None, typer.Option(
        metavar="SPEC",
        help="A model asked yes/no on answer pairs math-verify cannot decide (without it, "
             "those pairs are not equal).")] = None,
    test_share: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="The test split's share of the items.")] = None,
    test_n: Annotated[int | None, typer.Option(min=1, help="The test split's size.")] = None,
    agree: Annotated[int, typer.Option(
        min=1, help="Solvers that must give equivalent answers for an item to be verified.")] = 2,
    samples: Annotated[int, typer.Option(
        min=1, max=MAX_SAMPLES,
        help="Answers per solver and item (self-consistency: the most frequent counts).")] = 1,
    mode: Annotated[str, typer.Option(
        metavar="cot|answer",
        help="Prompting of a solver or model without its own #mode: cot (reasoning, then the "
             "answer) or answer (the answer only).")] = "cot",
    against: Annotated[list[Path] | None, typer.Option(
        help="A benchmark file (JSONL, Parquet or CSV with a text column): overlapping items "
             "are left out of both splits. Repeatable.")] = None,
    ngram: Annotated[int, typer.Option(min=1, help="Words per n-gram for --against.")] = 13,
    keep_contaminated: Annotated[bool, typer.Option(
        help="Keep the items --against flags in the splits (their matches are still stored).")
    ] = False,
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Seed of the split.")] = 0,
    db: DbOption = Path(DEFAULT_DB),
    batch_size: Annotated[int, typer.Option(
        min=1, help="Answers per committed batch (a kill loses at most the batch in flight).")
    ] = 32,
    resume: Annotated[str | None, resume_option(
        "JOB_ID", "its own settings; --solver / --model here give the specs' credentials "
                  "again")] = None,
    *,
    engine: Engine,
) -> None:
    """Split a synthesis job's items, verify the test items by solver agreement and score models
    on them with a 95% Wilson interval. Running it again reuses the stored split and answers.

    --executor ray runs every solver's, model's and judge's calls on one Ray actor pool; --batch
    sends them as provider batches, each spec's to its own server (see docs/batch.md)."""
    from personahub.api import run_evaluation_config
    from personahub.core.errors import UsageError
    from personahub.pipelines.evaluate import (
        EvalConfig,
        EvalSummary,
        summary_lines,
    )

    settings = {**engine.settings(), **engine.batching(batch_size)}
    summary: EvalSummary
    if resume is not None:  # only how it runs is this command's: the rest is the job's
        given = {"db": str(db), **settings,
                 **({"solvers": tuple(solver)} if solver else {}),
                 **({"models": tuple(model)} if model else {}),
                 **({"equivalence_judge": equivalence_judge} if equivalence_judge else {})}
        summary = run_evaluation_config(given, db=db, resume=resume)
    else:
        if job is None or not solver:
            raise UsageError("evaluate: give --job and at least one --solver (or --resume ID)")
        config = EvalConfig(job=job, solvers=tuple(solver), models=tuple(model or ()),
                            equivalence_judge=equivalence_judge,
                            test_share=test_share, test_n=test_n, seed=seed, agree=agree,
                            samples=samples, mode=mode,  # type: ignore[arg-type]  # checked by EvalConfig
                            against=tuple(str(p) for p in against or ()), ngram=ngram,
                            keep_contaminated=keep_contaminated, db=str(db),
                            **settings)
        summary = run_evaluation_config(config)
    for line in summary_lines(summary):
        out.print(line, highlight=False, soft_wrap=True)
