"""A calibration at scale through the loopback server: calls per second against the C/L bound,
and the time to score.

    python bench/bench_calibrate.py [--personas 1000] [--questions 50] [--concurrency 256]
                                    [--latency 0.5] [--no-persona-n 20] [--batch-size 2048]
                                    [--elicit sample --elicit distribution --elicit few-shot:2
                                     --elicit logprobs]

A seeded template population of ``--personas`` people over sex and party (``personas
sample-population``'s drawing, written to a temporary hub) and a synthetic long-CSV survey of
``--questions`` four-point questions with invented counts for SEX (Female, Male), POLPARTY
(Democrat, Republican) and Overall. The calibration asks ``--personas / 2`` personas per group,
so every person answers every question (the two sexes split the population; the party groups
overlap them and are asked nothing more), plus ``--no-persona-n`` no-persona asks per question:
``personas x questions + no_persona_n x questions`` structured calls in all, through the whole
model seam, against the loopback server (``personahub/models/fake_server``, every answer after ``--latency``
seconds, in a child process so its CPU is not the client's).

Figures: calls/s over the asking phase (the first call's start to the last call's end, from
``llm_calls``) and over the whole job, each as a fraction of the bound ``C / L``; the client's
CPU per call; the time to score (``pipelines.calibrate_scores.score_job`` again on the finished
job: every question x group x source, and the summary). The last line is
``RESULT calls=<n> rate=<calls/s> fraction=<of C/L> score_s=<s>``, after one line per
``--elicit`` method (default ``sample``): its calls and the calls per answer of a group
(``METHOD <name> calls=<n> pairs=<question x group pairs scored> calls_per_answer=<n/pairs>``):
``sample`` asks each panel member, ``distribution`` and ``few-shot:K`` one call per pair;
``logprobs`` one call per pair too, its held-out questions included (they fit its temperature
and are not scored: about 4/3 calls per scored pair), plus one probe call.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
from _synthetic import template_population

GROUPS = (("SEX", "Female"), ("SEX", "Male"), ("POLPARTY", "Democrat"),
          ("POLPARTY", "Republican"), ("Overall", "all"))
OPTIONS = ["Strongly agree", "Agree", "Disagree", "Strongly disagree", "Refused"]


def _serve(latency: float, urls: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    from personahub.models.fake_server.server import ServerOptions, start_server

    handle = start_server(ServerOptions(latency_s=latency))
    urls.put(handle.base_url)
    stop.wait(7200)
    handle.stop()


def write_survey(path: Path, questions: int, seed: int = 0) -> None:
    """A long CSV of ``questions`` four-point questions with invented counts per group."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question_id", "question", "options", "ordinal", "attribute", "group",
                         "option", "count"])
        for q in range(questions):
            for attribute, group in GROUPS:
                counts = rng.integers(0, 200, size=len(OPTIONS))
                for option, count in zip(OPTIONS, counts, strict=True):
                    writer.writerow([f"Q{q:03d}", f"Synthetic statement number {q}: agree?",
                                     " | ".join(OPTIONS), "1 | 2 | 3 | 4", attribute, group,
                                     option, int(count)])


def make_population(db: Path, people: int) -> str:
    shares = {"sex": {"female": 0.5, "male": 0.5}, "party": {"democrat": 0.5, "republican": 0.5}}
    return template_population(db, people, shares)


def asking_span(db: Path, job_id: str) -> tuple[int, float]:
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        calls, span = con.execute(
            "SELECT count(*), epoch(max(started_at + to_milliseconds(latency_ms)) - "
            "min(started_at)) FROM llm_calls WHERE job_id = ?", [job_id]).fetchall()[0]
    finally:
        con.close()
    return int(calls), float(span)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=1000)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--no-persona-n", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--elicit", action="append", default=None,
                        help="an elicitation method (repeat): sample, distribution, logprobs, "
                             "few-shot:K")
    args = parser.parse_args()

    from personahub import runtime
    from personahub.core.store import connect
    from personahub.pipelines.calibrate import CALIBRATION, CalibrateConfig
    from personahub.pipelines.calibrate_scores import score_job

    urls: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    stop = mp.Event()
    server = mp.Process(target=_serve, args=(args.latency, urls, stop), daemon=True)
    server.start()
    url = urls.get(timeout=60)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db, survey = Path(tmp) / "bench.duckdb", Path(tmp) / "survey.csv"
            write_survey(survey, args.questions)
            population = make_population(db, args.personas)
            config = CalibrateConfig(survey=str(survey), population=population,
                                     n=args.personas // 2, no_persona_n=args.no_persona_n,
                                     llm=f"{url}?model=offline", concurrency=args.concurrency,
                                     batch_size=args.batch_size, timeout_s=600,
                                     elicit=tuple(args.elicit or ("sample",)))
            cpu0, began = time.process_time(), time.perf_counter()
            result = runtime.run(CALIBRATION, config, db)
            wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
            calls, span = asking_span(db, result.job_id)
            con = connect(db)
            try:
                began = time.perf_counter()
                scored = score_job(con, result.job_id)
                score_s = time.perf_counter() - began
            finally:
                con.close()
    finally:
        stop.set()
        server.join(10)
    bound = args.concurrency / args.latency
    summary = result.summary
    print(f"{summary.personas} personas x {summary.questions} questions (+{args.no_persona_n} "
          f"no-persona asks each): {calls} calls, {summary.answered} answers, {summary.failed} "
          f"failed; status {result.status}")
    print(f"bound C/L = {args.concurrency}/{args.latency} = {bound:.0f} calls/s")
    print(f"asking phase: {span:.1f} s, {calls / span:.0f} calls/s = {calls / span / bound:.3f} "
          "of the bound")
    print(f"whole job: {wall:.1f} s, {calls / wall:.0f} calls/s = {calls / wall / bound:.3f} of "
          f"the bound; client CPU {1000 * cpu / calls:.2f} ms per call")
    print(f"time to score: {score_s:.2f} s ({len(scored.scores)} question x group x source rows)")
    for method in summary.elicit:
        made, pairs = summary.calls.get(method, 0), summary.cells.get(method, 0)
        print(f"METHOD {method} calls={made} pairs={pairs} "
              f"calls_per_answer={made / pairs if pairs else float('nan'):.2f}")
    print(f"RESULT calls={calls} rate={calls / span:.0f} fraction={calls / span / bound:.3f} "
          f"score_s={score_s:.2f}")


if __name__ == "__main__":
    main()
