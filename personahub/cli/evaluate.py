"""CLI command personahub evaluate (registered by personahub/cli/app.py): hold out a seeded test
split of a synthesis job's items or an outside item file's, verify the test items by their
reference answers or by solver agreement, and score models on them (pipelines/evaluate.py)."""

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
# --provider-batch: each solver's, model's and judge's calls as provider batches (no --provider-batch-file)
@engine_options("concurrency", "timeout_s", "executor", "batch", without=("provider_batch_file",))
def evaluate(
    job: Annotated[str | None, typer.Option(
        help="The synthesis job whose items are evaluated (or --items).")] = None,
    items: Annotated[Path | None, typer.Option(
        metavar="FILE", help="An outside item set instead of a job: a JSONL, CSV or Parquet "
             "file, or a Hugging Face datasets folder (the [hf] extra), of questions and, where "
             "it has them, reference answers. Items with a reference are scored against it; "
             "without --test-n or --test-share every item is a test item.")] = None,
    question_column: Annotated[str | None, typer.Option(
        metavar="NAME", help="The --items column holding the question (default: the first of "
             "text, question, problem, prompt, input, content).")] = None,
    answer_column: Annotated[str | None, typer.Option(
        metavar="NAME", help="The --items column holding the reference answer, GSM8K's '#### "
             "72' read as 72 (default: answer, if the file has it; '-' for none: every item is "
             "then verified by solver agreement).")] = None,
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
        help="A benchmark file (JSONL, Parquet or CSV with a text column, or a datasets "
             "folder): overlapping items are left out of both splits. Known by its contents: an "
             "edited file is checked again. Repeatable.")] = None,
    ngram: Annotated[int, typer.Option(min=1, help="Words per n-gram for --against.")] = 13,
    keep_contaminated: Annotated[bool, typer.Option(
        help="Keep the items --against flags in the splits (their matches are still stored).")
    ] = False,
    family_threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, metavar="X",
        help="Items whose word sets have an exact Jaccard of at least X are one near-duplicate "
             "family, kept on one side of the split.")] = 0.9,
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
    """Split a synthesis job's items or an outside file's (--items), verify the test items by
    their reference answers or by solver agreement, and score models on them with a 95% Wilson
    interval. Running it again reuses the stored split and answers.

    --executor ray runs every solver's, model's and judge's calls on one Ray actor pool; --provider-batch
    sends them as provider batches, each spec's to its own server (see docs/batch.md)."""
    from personahub.api import run_evaluation_config
    from personahub.cli.job_running import (
        JobHooks,
        awaiting_results,
        batch_progress,
        unreachable,
    )
    from personahub.core.errors import UsageError
    from personahub.pipelines.evaluate import EvalConfig, EvalSummary, summary_lines

    settings = {**engine.settings(), **engine.batching(batch_size)}
    config: EvalConfig | dict[str, object]
    if resume is not None:  # only how it runs is this command's: the rest is the job's
        config = {"db": str(db), **settings,
                  **({"solvers": tuple(solver)} if solver else {}),
                  **({"models": tuple(model)} if model else {}),
                  **({"equivalence_judge": equivalence_judge} if equivalence_judge else {})}
    else:
        if (job is None and items is None) or not (solver or (items and model)):
            raise UsageError("evaluate: give --job and at least one --solver, or --items and a "
                             "--solver or --model (or --resume ID)")
        config = EvalConfig(job=job, items=None if items is None else str(items),
                            question_column=question_column, answer_column=answer_column,
                            solvers=tuple(solver or ()), models=tuple(model or ()),
                            equivalence_judge=equivalence_judge,
                            test_share=test_share, test_n=test_n, seed=seed, agree=agree,
                            samples=samples, mode=mode,  # type: ignore[arg-type]  # checked by EvalConfig
                            against=tuple(str(p) for p in against or ()), ngram=ngram,
                            keep_contaminated=keep_contaminated,
                            family_threshold=family_threshold, db=str(db), **settings)
    hooks = JobHooks("evaluation", db)
    with hooks.progress() as bar, awaiting_results():
        handle = bar.add_task("evaluating", total=None)
        summary: EvalSummary = run_evaluation_config(
            config, db=db, resume=resume, on_ready=hooks.on_ready, on_start=hooks.on_start,
            warn=unreachable, progress=batch_progress(bar, handle, "evaluating"))
    for line in summary_lines(summary):
        out.print(line, highlight=False, soft_wrap=True)
