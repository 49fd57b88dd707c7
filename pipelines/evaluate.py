"""Evaluate a synthesis job's items, or an outside item set, as the Persona Hub paper did (§4.1.2).

A seeded held-out split keeps each near-duplicate family on one side (evaluate_split). A test item
with a reference answer (an outside file's answer column) is scored against it; one without is
verified when enough solvers give equivalent answers (math-verify; nothing executed). Scored
models get accuracy on the verified items. The job's id comes from its settings, so a second
start resumes it; tables are keyed by the split, so jobs on one split share its solvers' answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import duckdb

from personahub.analysis.judgments import wilson
from personahub.core.commit import JobRef, commit_batch, write_calls
from personahub.core.contracts import ServesModels, StructuredCaller, StructuredResult
from personahub.core.engine_options import check_fields, default
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.kernel import BatchOutcome, JobContext, SpecBase, engine, register
from personahub.core.plan_limits import MAX_SAMPLES, check_plan
from personahub.core.store import DEFAULT_DB
from personahub.core.validate import check_int
from personahub.executors import check_executor
from personahub.models.adaptive_limit import Concurrency
from personahub.models.client import redact_spec
from personahub.models.failures import call_error
from personahub.models.settings import LLMSettings
from personahub.pipelines import labels
from personahub.pipelines.evaluate_files import OutsideItems, content_sha256, read_items
from personahub.pipelines.evaluate_items import (
    ItemSet,
    item_set,
    items_without_reference,
    store_items,
)
from personahub.pipelines.evaluate_scores import (
    Same,
    _clusters,
    breakdown_lines,
    group_scores,
    model_differences,
    same_answers,
    solver_answers,
)
from personahub.pipelines.evaluate_split import (
    FAMILY_THRESHOLD,
    ITEMS_PREFIX,
    HeldOutItem,
    SplitSummary,
    eval_id_for,
    held_out_items,
    reference_answers,
    source_items,
    split_job,
)
from personahub.pipelines.prompts.evaluate import (
    EQUIVALENCE_MAX_TOKENS,
    EQUIVALENCE_PURPOSE,
    SOLVE_MODES,
    SOLVE_PURPOSE,
    EquivalenceVerdict,
    SolveMode,
    equivalence_messages,
    solve_max_tokens,
    solve_messages,
    solve_schema,
)
from personahub.pipelines.provider_batch_jobs import (
    BatchFields,
    batch_line,
    batching_caller,
)
from personahub.pipelines.shipped_spec import NamedFromRow, stored_job_id
from personahub.tasks.answer_equivalence import equivalent

if TYPE_CHECKING:
    import pandas as pd

EVAL_KIND = "evaluation"
_ANSWER_CHARS = 500  # what a row keeps of a final answer
_REASONING_CHARS = 4000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def spec_mode(spec: str, default: SolveMode = "cot") -> tuple[str, SolveMode]:
    """Split a solver spec into the spec and its prompting mode, read from a "#cot" or "#answer"
    suffix (default when there is none). "#" is safe to use: a URL fragment is never sent to a
    server. Any other suffix is a usage error.
    """
    base, mark, mode = spec.rpartition("#")
    if not mark:
        return spec, default
    if mode not in SOLVE_MODES:
        raise UsageError(f"solver {spec!r}: the prompting after '#' must be one of "
                         f"{', '.join(SOLVE_MODES)}, got {mode!r}")
    return base, mode


def answer_name(spec: str, default: SolveMode = "cot") -> str:
    """Return the name a solver's answers are stored under: the redacted spec, with "#answer" appended
    in answer-only mode, so one spec can solve in both modes.
    """
    base, mode = spec_mode(spec, default)
    return redact_spec(base) + ("" if mode == "cot" else f"#{mode}")


def _refuse_credentials(spec: str, flag: str) -> None:
    """Refuse user:password@ in any URL of a spec, naming its flag (a usage error)."""
    from personahub.models.endpoint_specs import refuse_url_credentials

    for url in spec_mode(spec)[0].split(","):
        if "://" in url:
            refuse_url_credentials(url.strip(), flag)


def _stored_spec(spec: str) -> str:
    """Return a spec as the job's config stores it: redacted, its own mode kept."""
    base, mark, mode = spec.rpartition("#")
    return redact_spec(base) + f"#{mode}" if mark else redact_spec(spec)


def solver_settings(spec: str, **settings: Any) -> LLMSettings:
    """Return the model settings of a solver spec, its "#" mode dropped. A malformed spec fails here as a
    usage error rather than later at job start.
    """
    from personahub.models.endpoint_specs import with_spec_seed
    from personahub.models.settings import LLMConfigError

    spec, _ = spec_mode(spec)
    try:
        with_spec_seed(LLMSettings(spec=spec, **settings))
    except LLMConfigError as exc:
        raise UsageError(f"solver {spec!r}: {exc}") from None
    return LLMSettings(spec=spec, **settings)




@dataclass
class SolveSummary:
    """What one solver pass did: answers written, already stored, failed calls."""

    spec: str
    written: int = 0
    skipped: int = 0
    failed: int = 0
    calls: list[StructuredResult[Any]] = field(default_factory=list, repr=False)


async def solve(con: duckdb.DuckDBPyConnection, eval_id: str, spec: str,
                caller: StructuredCaller, *, mode: SolveMode = "cot", samples: int = 1,
                role: str = "solver", items: Sequence[HeldOutItem] | None = None,
                batch_size: int = 32) -> SolveSummary:
    """Ask one solver (or, with role "model", a scored model) for every test item's final answer.

    Several samples per item give self-consistency. Each batch of answers is committed with its
    call rows, so a kill loses at most one batch. Returns the counts.
    """
    if mode not in SOLVE_MODES:
        raise UsageError(f"solver mode must be one of {SOLVE_MODES}, got {mode!r}")
    if samples < 1:
        raise UsageError(f"--samples must be >= 1, got {samples}")
    name = answer_name(spec, mode)
    spec, mode = spec_mode(spec, mode)
    items = held_out_items(con, eval_id) if items is None else items
    done = {(r[0], r[1]) for r in con.execute(
        "SELECT item_id, sample FROM eval_answers WHERE eval_id = ? AND role = ? AND spec = ? "
        "AND answer IS NOT NULL", [eval_id, role, name]).fetchall()}
    todo = [(item, k) for item in items for k in range(samples) if (item.item_id, k) not in done]
    summary = SolveSummary(name, skipped=len(items) * samples - len(todo))
    schema = solve_schema(mode)

    async def one(item: HeldOutItem, k: int) -> StructuredResult[Any]:
        return await caller.structured(schema, solve_messages(item.text, mode),
                                       purpose=SOLVE_PURPOSE, sample=k,
                                       max_tokens=solve_max_tokens(mode))

    job = JobRef(EVAL_KIND, eval_id)  # not part of a run: run_id stays NULL
    for start in range(0, len(todo), batch_size):  # a batch's answers and calls commit together
        batch = todo[start:start + batch_size]
        results = list(await asyncio.gather(*(one(item, k) for item, k in batch)))
        rows = []
        for (item, k), result in zip(batch, results, strict=True):
            value = result.value
            if value is None:
                summary.failed += 1
                continue
            rows.append({"eval_id": eval_id, "item_id": item.item_id, "role": role,
                         "spec": name, "mode": mode, "sample": k,
                         "answer": str(value.final_answer)[:_ANSWER_CHARS],
                         "reasoning": str(getattr(value, "reasoning", ""))[:_REASONING_CHARS]
                         or None,
                         "model": caller.label, "created_at": _now()})
        commit_batch(con, job, caller, {"eval_answers": rows}, results)
        summary.written += len(rows)
        summary.calls.extend(results)
    return summary


def verify_items(con: duckdb.DuckDBPyConnection, eval_id: str, *, agree: int = 2,
                 same: Same | None = None) -> Counter[str]:
    """Mark each test item verified: by its reference answer where the item set gives one, else
    when at least `agree` solvers give equivalent answers (the paper used 2 of 3).

    Returns:
        The counts of verified and unverified items, and of those verified by a reference.
    """
    if agree < 1:
        raise UsageError(f"--agree must be >= 1, got {agree}")
    references = reference_answers(con, eval_id)
    answers = solver_answers(con, eval_id, same=same)
    items = sorted({item for per in answers.values() for item in per} - set(references))
    if items and agree > len(answers):
        raise UsageError(f"--agree {agree}: only {len(answers)} solvers answered")
    rows, counts = [], Counter[str]()
    for item, reference in references.items():
        counts.update(["verified", "by reference"])
        rows.append([eval_id, item, True, reference, json.dumps(["reference"]),
                     sum(item in per for per in answers.values()), agree])
    for item in items:
        specs = [s for s in sorted(answers) if item in answers[s]]
        given = [answers[s][item] for s in specs]
        best = max(_clusters(given, same), key=len) if given else []
        ok = len(best) >= agree
        counts["verified" if ok else "unverified"] += 1
        rows.append([eval_id, item, ok, given[best[0]] if ok else None,
                     json.dumps([specs[i] for i in best] if ok else []), len(given), agree])
    con.execute("DELETE FROM eval_verified WHERE eval_id = ?", [eval_id])
    if rows:
        con.executemany("INSERT INTO eval_verified VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    return counts


def agreement_matrix(con: duckdb.DuckDBPyConnection, eval_id: str,
                     same: Same | None = None) -> dict[str, dict[str, float | None]]:
    """For each pair of solvers, the share of the items both answered on which they agree
    (None where they answered no item in common).
    """
    same = same or same_answers()
    answers = solver_answers(con, eval_id, same=same)
    specs = sorted(answers)
    matrix: dict[str, dict[str, float | None]] = {a: {} for a in specs}
    for a in specs:
        for b in specs:
            common = sorted(set(answers[a]) & set(answers[b]))
            if not common:
                matrix[a][b] = None
                continue
            agreed = sum(a == b or same(answers[a][i], answers[b][i]) for i in common)
            matrix[a][b] = agreed / len(common)
    return matrix


def undecided_pairs(con: duckdb.DuckDBPyConnection, eval_id: str) -> list[tuple[str, str]]:
    """Return the pairs of answers to the same item that math-verify cannot decide, each once, sorted:
    what an equivalence judge is asked.
    """
    by_item: dict[str, set[str]] = {}
    for item, answer in con.execute("SELECT item_id, answer FROM eval_answers WHERE eval_id = ? "
                                    "AND answer IS NOT NULL", [eval_id]).fetchall():
        by_item.setdefault(item, set()).add(answer)
    pairs: set[tuple[str, str]] = set()
    for answers in by_item.values():
        ordered = sorted(answers)
        for i, a in enumerate(ordered):
            for b in ordered[i + 1:]:
                if (a, b) not in pairs and equivalent(a, b) is None:
                    pairs.add((a, b))
    return sorted(pairs)


def judge_verdicts(con: duckdb.DuckDBPyConnection, eval_id: str,
                   judge: str) -> dict[tuple[str, str], bool]:
    """Return the stored verdicts of one equivalence judge (redacted spec) on an evaluation's pairs."""
    return {(a, b): bool(equal) for a, b, equal in con.execute(
        "SELECT answer_a, answer_b, equal FROM eval_equivalence WHERE eval_id = ? AND judge = ?",
        [eval_id, judge]).fetchall()}




@dataclass(frozen=True)
class Score:
    """A model's accuracy on the verified test items, with its Wilson interval."""

    spec: str
    correct: int
    total: int
    low: float
    high: float

    @property
    def accuracy(self) -> float | None:
        """Accuracy: correct / total, None when nothing was scored."""
        return self.correct / self.total if self.total else None


def score(con: duckdb.DuckDBPyConnection, eval_id: str, spec: str, *,
          alpha: float = 0.05, mode: SolveMode = "cot", same: Same | None = None) -> Score:
    """Return a scored model's accuracy on the verified test items; an item it did not answer is wrong."""
    name = answer_name(spec, mode)
    same = same or same_answers()
    model = solver_answers(con, eval_id, role="model", same=same).get(name, {})
    refs = con.execute("SELECT item_id, reference FROM eval_verified WHERE eval_id = ? AND "
                       "verified ORDER BY item_id", [eval_id]).fetchall()
    correct = sum(item in model and same(model[item], ref) for item, ref in refs)
    low, high = wilson(correct, len(refs), alpha)
    return Score(name, correct, len(refs), low, high)





def contaminated(con: duckdb.DuckDBPyConnection, eval_id: str, job_id: str,
                 against: Sequence[str], *, ngram: int = 13,
                 sha256: Sequence[str] | None = None) -> frozenset[str]:
    """Flag the items that overlap a benchmark file and store the matches; returns their ids.

    Args:
        con: the database.
        eval_id: the split the check belongs to (its id holds the benchmarks' content hashes).
        job_id: the synthesis job or outside item set checked.
        against: the benchmark files.
        ngram: words per n-gram.
        sha256: each file's content hash when the evaluation was set up; a file that changed
            since is refused rather than checked under the old key.
    """
    from personahub.personas.decontaminate import decontaminate
    from personahub.pipelines.evaluate_files import benchmark_texts

    if con.execute("SELECT count(*) FROM eval_splits WHERE eval_id = ?", [eval_id]).fetchone() \
            != (0,):
        return frozenset(r[0] for r in con.execute(
            "SELECT item_id FROM eval_contamination WHERE eval_id = ?", [eval_id]).fetchall())
    rows = source_items(con, job_id)
    hashes = list(sha256) if sha256 is not None else [None] * len(against)
    matches = decontaminate([row.text for row in rows],
                            {path: benchmark_texts(path, sha256=digest)
                             for path, digest in zip(against, hashes, strict=True)}, ngram=ngram)
    found = [[eval_id, rows[m.item].item_id, m.benchmark, m.benchmark_row, m.kind, m.detail]
             for m in matches]
    if found:
        con.executemany("INSERT INTO eval_contamination VALUES (?, ?, ?, ?, ?, ?)", found)
    return frozenset(rows[m.item].item_id for m in matches)


@dataclass(frozen=True, kw_only=True)
class EvalConfig(BatchFields):
    """One evaluation: its items (a synthesis job's or an outside file's), its split, its solvers
    and the models scored.

    An outside file and each --against file are known by their content hash, filled in here when
    not given (a resume reads the stored ones). On resume the caller's specs (with credentials)
    are used, else the stored redacted ones.
    """

    job: str | None = None
    items: str | None = None  # an outside item file or datasets folder (--items)
    question_column: str | None = None  # None: the first of TEXT_COLUMNS the file has
    answer_column: str | None = None  # None: "answer" when the file has it; "-": none
    items_sha256: str | None = None  # the item file's content hash (filled from the file)
    solvers: tuple[str, ...] = engine((), identity=True)
    models: tuple[str, ...] = engine((), identity=True)
    # asked about the answer pairs math-verify cannot decide (None: those are not equal)
    equivalence_judge: str | None = engine(None, identity=True)
    test_share: float | None = None
    test_n: int | None = None
    seed: int = 0
    agree: int = 2
    samples: int = 1
    mode: SolveMode = "cot"
    against: tuple[str, ...] = ()
    against_sha256: tuple[str, ...] = ()  # each --against file's content hash (filled)
    ngram: int = 13
    keep_contaminated: bool = False  # flagged items stay in the splits (their matches stored)
    family_threshold: float = FAMILY_THRESHOLD  # Jaccard joining two items into one family
    db: str = engine(DEFAULT_DB)
    concurrency: Concurrency = engine(default("concurrency"))
    timeout_s: float = engine(default("timeout_s"))
    batch_size: int = engine(32)  # answers per committed batch (a kill loses at most one)
    # where the calls run: local, or every spec's on one Ray actor pool
    executor: str = engine(default("executor"))
    ray_address: str | None = engine(default("ray_address"))  # None: RAY_ADDRESS, else local
    ray_workers: int | None = engine(default("ray_workers"))  # None: one per CPU

    def __post_init__(self) -> None:
        if (self.job is None) == (self.items is None):
            raise UsageError("evaluate: give --job (a synthesis job) or --items (a file), not "
                             "both")
        if self.items is None and (self.test_share is None) == (self.test_n is None):
            raise UsageError("evaluate: give exactly one of --test-share or --test-n")
        if self.test_share is not None and self.test_n is not None:
            raise UsageError("evaluate: give exactly one of --test-share or --test-n")
        if self.items is None and (self.question_column or self.answer_column):
            raise UsageError("--question-column / --answer-column: columns of an --items file")
        if not self.solvers and (self.items is None or not self.models):
            raise UsageError("evaluate: give at least one --solver" if self.items is None else
                             "evaluate --items: give at least one --solver or --model")
        if self.mode not in SOLVE_MODES:
            raise UsageError(f"--mode must be one of {SOLVE_MODES}, got {self.mode!r}")
        if len({answer_name(s, self.mode) for s in self.solvers}) != len(self.solvers):
            raise UsageError("evaluate: a --solver is given twice (with the same prompting)")
        if len({answer_name(s, self.mode) for s in self.models}) != len(self.models):
            raise UsageError("evaluate: a --model is given twice (with the same prompting)")
        if self.equivalence_judge is not None and "#" in self.equivalence_judge:
            raise UsageError(f"--equivalence-judge {self.equivalence_judge!r}: a judge has no "
                             "prompting mode ('#')")
        if self.solvers and not 1 <= self.agree <= len(self.solvers):
            raise UsageError(f"--agree must be between 1 and the {len(self.solvers)} solvers, "
                             f"got {self.agree}")
        check_int(self.samples, "--samples", low=1, high=MAX_SAMPLES)
        if not 0 < self.family_threshold < 1:
            raise UsageError(f"--family-threshold must be between 0 and 1, got "
                             f"{self.family_threshold}")
        for flag, specs in (("--solver", self.solvers), ("--model", self.models),
                            ("--equivalence-judge", (self.equivalence_judge or "",))):
            for spec in specs:  # refused before the split is written, as the first solver is
                _refuse_credentials(spec, flag)
        check_int(self.batch_size, "batch size", low=1)
        check_fields(self)  # the engine options' own checks; concurrency parsed
        check_executor(self.executor)
        if self.provider_batch_file is not None:
            raise UsageError("evaluate: --provider-batch-file is not supported (an evaluation asks "
                             "several endpoints); use --provider-batch")
        self.check_batch(executor=self.executor, cache="off")
        if self.items is not None and self.items_sha256 is None:
            object.__setattr__(self, "items_sha256", content_sha256(self.items, "--items"))
        if self.against and not self.against_sha256:
            object.__setattr__(self, "against_sha256",
                               tuple(content_sha256(path, "--against") for path in self.against))
            from personahub.pipelines.evaluate_files import benchmark_texts

            for path, digest in zip(self.against, self.against_sha256, strict=True):
                benchmark_texts(path, sha256=digest)  # an unusable file: one line, before a call
        if len(self.against_sha256) != len(self.against):
            raise UsageError("evaluate: one content hash per --against file")

    @property
    def source(self) -> str:
        """What is split: the synthesis job, or the item set's id (from the file's content
        hash and the columns asked for)."""
        if self.job is not None:
            return self.job
        text = json.dumps([self.items_sha256, self.question_column, self.answer_column])
        return ITEMS_PREFIX + hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def primary(self) -> str:
        """The spec whose client is the kernel's own: the first solver, else the first model."""
        return (self.solvers or self.models)[0]

    @property
    def eval_id(self) -> str:
        """The split's id, from its settings and the benchmark files' contents; shared by jobs on
        the same split.
        """
        base = eval_id_for(self.source, self.seed, self.test_share, self.test_n,
                           self.family_threshold)
        if not self.against:
            return base
        extra = json.dumps([sorted(self.against_sha256), self.ngram, self.keep_contaminated])
        return "split-" + hashlib.sha1((base + extra).encode()).hexdigest()[:12]

    def identity(self) -> dict[str, object]:
        """Return what names the evaluation job: its split, solvers, models and equivalence judge."""
        judge = self.equivalence_judge
        return {"split": self.eval_id, "solvers": [answer_name(s, self.mode) for s in self.solvers],
                "models": [answer_name(m, self.mode) for m in self.models], "agree": self.agree,
                "samples": self.samples, "mode": self.mode,
                **({"equivalence_judge": redact_spec(judge)} if judge else {})}

    def names(self, role: str) -> list[str]:
        """Return the answer names of the solvers (role "solver") or of the scored models, in order."""
        specs = self.solvers if role == "solver" else self.models
        return [answer_name(s, self.mode) for s in specs]


def evaluation_id_for(config: EvalConfig) -> str:
    """Return the job's id, a hash of its identity: the same settings give the same job."""
    text = json.dumps(config.identity(), sort_keys=True)
    return "evaluation-" + hashlib.sha1(text.encode()).hexdigest()[:12]


@dataclass
class EvalSummary:
    """What an evaluation found: its split, answers, verified share, agreement and scores."""

    eval_id: str
    split: SplitSummary
    contaminated: int
    solved: list[SolveSummary]
    verified: int
    unverified: int
    matrix: dict[str, dict[str, float | None]]
    scores: list[Score]
    calls: dict[str, int]
    job_id: str = ""  # the kernel job's id (what personahub resume takes)
    # each model's accuracy per task, prompting and persona source, and paired differences:
    # DataFrames, None without models
    groups: pd.DataFrame | None = field(default=None, repr=False)
    differences: pd.DataFrame | None = field(default=None, repr=False)
    # answer pairs math-verify could not decide; the equivalence judge's verdicts on them
    undecided: int = 0
    judge: str | None = None
    judged: int = 0
    judged_equal: int = 0
    batches: str | None = None  # what --provider-batch's provider batches did (None: asked online)
    by_reference: int = 0  # verified items scored against an item set's reference answer
    item_set: ItemSet | None = None  # what an --items file gave (None: a synthesis job's items)
    family_threshold: float = FAMILY_THRESHOLD
    contaminated_by: dict[str, int] = field(default_factory=dict)  # per --against file
    kept_contaminated: bool = False

    @property
    def verified_share(self) -> float | None:
        """Verified items among the answered test items."""
        total = self.verified + self.unverified
        return self.verified / total if total else None


class Ask(NamedTuple):
    """One call to make: an answer (role, spec, item, sample), or, with role "judge", a verdict on
    whether the answers text and other are equal.
    """

    role: str
    spec: str
    item_id: str
    text: str
    sample: int
    name: str = ""
    mode: SolveMode = "cot"
    other: str = ""


def _answer_row(eval_id: str, ask: Ask, value: Any, label: str) -> dict[str, Any]:
    """Return the eval_answers row of a structured answer."""
    return {"eval_id": eval_id, "item_id": ask.item_id, "role": ask.role,
            "spec": ask.name, "mode": ask.mode, "sample": ask.sample,
            "answer": str(value.final_answer)[:_ANSWER_CHARS],
            "reasoning": str(getattr(value, "reasoning", ""))[:_REASONING_CHARS] or None,
            "model": label, "created_at": _now()}


def _verdict_row(eval_id: str, ask: Ask, value: Any, label: str) -> dict[str, Any]:
    """Return the eval_equivalence row of the judge's structured verdict."""
    return {"eval_id": eval_id, "answer_a": ask.text, "answer_b": ask.other, "judge": ask.name,
            "equal": bool(value.equal), "model": label, "created_at": _now()}


def _base(spec: str) -> str:
    """Return the spec a client is built for: the spec without its prompting mode."""
    return spec_mode(spec)[0]


class EvalAsker:
    """Asks one batch of the client of its spec; the first solver's client is the kernel's own."""

    def __init__(self, primary: str, clients: Mapping[str, StructuredCaller]) -> None:
        self.primary = _base(primary)
        self.clients = clients

    def client_for(self, spec: str, caller: StructuredCaller) -> StructuredCaller:
        """Return the client for a spec; a caller that runs elsewhere (Ray) is used for the other specs too.
        """
        base = _base(spec)
        if base == self.primary:
            return caller
        alongside = getattr(caller, "alongside", None)
        client = self.clients[base]
        return cast(StructuredCaller, alongside(client)) if alongside is not None else client

    async def run_batch(self, batch: Sequence[Ask],
                        caller: StructuredCaller) -> list[StructuredResult[Any]]:
        """Return the batch's answers, asked concurrently (the client bounds the calls in flight)."""
        client = self.client_for(batch[0].spec, caller)
        results = await self.ask(batch, client)
        stats = getattr(caller, "stats", None)
        if client is not caller and stats is not None:  # the progress display counts the job's
            for result in results:                      # calls on its own client's totals
                stats.add(result.records)
        return results

    async def ask(self, batch: Sequence[Ask],
                  client: StructuredCaller) -> list[StructuredResult[Any]]:
        """Ask the given client for the batch's answers (or verdicts)."""
        if batch[0].role == "judge":
            return list(await asyncio.gather(*(
                client.structured(EquivalenceVerdict, equivalence_messages(ask.text, ask.other),
                                  purpose=EQUIVALENCE_PURPOSE,
                                  max_tokens=EQUIVALENCE_MAX_TOKENS)
                for ask in batch)))
        return list(await asyncio.gather(*(
            client.structured(solve_schema(ask.mode), solve_messages(ask.text, ask.mode),
                              purpose=SOLVE_PURPOSE, sample=ask.sample,
                              max_tokens=solve_max_tokens(ask.mode))
            for ask in batch)))


class BatchedEvalAsker:
    """An EvalAsker that sends each spec's calls as provider batches (--provider-batch).

    Each client gets its own custom_id prefix, stable across a resume, because two solvers asking
    the same item in the same mode make the same call key.
    """

    def __init__(self, inner: EvalAsker, ctx: JobContext[EvalConfig], specs: Sequence[str]) -> None:
        self.inner, self.ctx = inner, ctx
        self.prefixes = {spec: f"c{i}." for i, spec in enumerate(specs)}
        self.callers: dict[str, Any] = {}

    async def run_batch(self, batch: Sequence[Ask],
                        caller: StructuredCaller) -> list[StructuredResult[Any]]:
        """Return the batch's answers, its calls sent as batches by its client's batching caller."""
        base = _base(batch[0].spec)
        batching = self.callers.get(base)
        if batching is None:
            batching = self.callers[base] = batching_caller(
                self.ctx, self.inner.client_for(batch[0].spec, caller),
                prefix=self.prefixes[base])
        work = asyncio.ensure_future(self.inner.ask(batch, batching))
        await batching.drive(work)
        result: list[StructuredResult[Any]] = work.result()
        return result

    async def committed(self) -> None:
        """Delete the provider files of spent batches: the kernel committed a batch."""
        for batching in self.callers.values():
            await batching.forget_spent()

    def line(self) -> str | None:
        """Return what this run's batches did, per client (None when none was made)."""
        lines = [f"{self.prefixes[base]} {batch_line(c)}" for base, c in self.callers.items()]
        return "; ".join(lines) or None


@dataclass
class EvalState:
    """One evaluation's state: the other specs' clients and what this run asked, per (role, name).
    """

    clients: dict[str, StructuredCaller] = field(default_factory=dict)
    solved: dict[tuple[str, str], SolveSummary] = field(default_factory=dict)
    outside: OutsideItems | None = None  # an --items file read for this job's start
    judged: int = 0  # the judge's verdicts this run stored
    batched: BatchedEvalAsker | None = None  # the batched asker (--provider-batch)


def _eval_state(ctx: JobContext[EvalConfig]) -> EvalState:
    state: EvalState = ctx.state
    return state


def _write_calls(con: duckdb.DuckDBPyConnection, job: JobRef, client: StructuredCaller,
                 results: Sequence[StructuredResult[Any]]) -> None:
    """Call rows and cache entries of a batch asked of a client other than the job's."""
    write_calls(con, cast(ServesModels, client), results, job)


class EvaluationSpec(NamedFromRow, SpecBase[EvalConfig, Sequence[Ask], list[StructuredResult[Any]],
                                           EvalSummary], kind=EVAL_KIND):
    """The job spec behind personahub evaluate.

    The split and the benchmark matches are written with the job's row. Each batch holds one spec's
    answers; the judge's verdicts come last. Verification and scores are computed from the stored
    answers at the end.
    """

    calls_in_run = False
    config_type = EvalConfig
    refuses_twins = False  # the id is the settings: a second start is the same job, resumed

    def job_id_for(self, config: EvalConfig) -> str:
        return evaluation_id_for(config)

    def belongs_to(self, config: EvalConfig) -> str | None:
        return config.job  # an outside item set belongs to no job

    def upgrade(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Upgrade a config an earlier version stored: its --against files were known by no hash."""
        if stored.get("against") and not stored.get("against_sha256"):
            return {**stored, "against_sha256": ["unknown"] * len(stored["against"])}
        return stored

    def model_settings(self, config: EvalConfig) -> LLMSettings:
        return solver_settings(config.primary, concurrency=config.concurrency,
                               timeout_s=config.timeout_s)

    def prepare(self, ctx: JobContext[EvalConfig]) -> None:
        """Refuse a job without items, and read an item file not yet stored (nothing recorded).
        """
        config, con = ctx.config, ctx.con
        ctx.state = state = EvalState()
        if config.job is not None:
            found = con.execute("SELECT count(*) FROM v_items WHERE source = 'job' AND "
                                "source_id = ?", [config.job]).fetchone()
            if not found or not found[0]:
                raise PersonahubError(f"--job {config.job}: no synthesized items")
            total = int(found[0])
        else:
            stored = item_set(con, config.source)
            if stored is None:
                assert config.items is not None  # one of job / items, checked by the config
                state.outside = read_items(config.items, question=config.question_column,
                                           answer=config.answer_column,
                                           sha256=config.items_sha256)
                total = len(state.outside.items)
                missing = sum(ref is None for _, _, ref in state.outside.items)
            else:
                total, missing = stored.items, items_without_reference(con, config.source)
            if missing and not config.solvers:
                answer = state.outside.answer_column if state.outside is not None else None
                raise UsageError(f"--items {config.items}: {missing} item(s) have no reference "
                                 f"answer{f' in column {answer!r}' if answer else ''}; give "
                                 "--solver to verify them by agreement (or --answer-column)")
        if not ctx.resumed:  # an upper bound: solvers answer only items without a reference
            test = (config.test_n if config.test_n is not None
                    else round(float(config.test_share) * total)
                    if config.test_share is not None else total)
            check_plan(min(test, total) * (len(config.solvers) * config.samples
                                           + len(config.models)),
                       "evaluate", "--samples, --test-n or --test-share, fewer --solver/--model")

    def start(self, ctx: JobContext[EvalConfig]) -> BatchOutcome:
        """Write the item set, the split and benchmark matches in the job row's transaction (a
        split that would leave one side empty records nothing).
        """
        config, state = ctx.config, _eval_state(ctx)
        ctx.stored["solvers"] = [_stored_spec(s) for s in config.solvers]
        ctx.stored["models"] = [_stored_spec(m) for m in config.models]
        ctx.stored["split"] = config.eval_id  # what reports and exports find its tables by
        if config.equivalence_judge is not None:
            ctx.stored["equivalence_judge"] = redact_spec(config.equivalence_judge)

        def split() -> None:
            if state.outside is not None:
                store_items(ctx.con, config.source, state.outside)
            flagged = contaminated(ctx.con, config.eval_id, config.source, config.against,
                                   ngram=config.ngram, sha256=config.against_sha256) \
                if config.against else frozenset()
            split_job(ctx.con, config.source, test_share=config.test_share,
                      test_n=config.test_n, seed=config.seed, eval_id=config.eval_id,
                      exclude=frozenset() if config.keep_contaminated else flagged,
                      threshold=config.family_threshold)

        return BatchOutcome(then=split)

    def plan(self, ctx: JobContext[EvalConfig]) -> Iterator[Sequence[Ask]]:
        """Every solver's answers, then every model's, less those stored; then the judge's verdicts on
        the undecidable pairs (each batch is committed before the next is asked for).
        """
        config, state = ctx.config, _eval_state(ctx)
        eval_id = config.eval_id
        items = held_out_items(ctx.con, eval_id)
        referenced = set(reference_answers(ctx.con, eval_id))
        unreferenced = [item for item in items if item.item_id not in referenced]
        done = {tuple(r) for r in ctx.con.execute(
            "SELECT role, spec, item_id, sample FROM eval_answers WHERE eval_id = ? "
            "AND answer IS NOT NULL", [eval_id]).fetchall()}
        # solvers verify the items without a reference answer; models answer every test item
        who = [("solver", s, config.samples, unreferenced) for s in config.solvers] + \
            [("model", m, 1, items) for m in config.models]
        batches: list[list[Ask]] = []
        total = 0
        for role, spec, samples, items in who:
            name = answer_name(spec, config.mode)
            mode = spec_mode(spec, config.mode)[1]
            summary = state.solved.setdefault((role, name), SolveSummary(name))
            todo = [Ask(role, spec, item.item_id, item.text, k, name, mode) for item in items
                    for k in range(samples) if (role, name, item.item_id, k) not in done]
            summary.skipped = len(items) * samples - len(todo)
            total += len(items) * samples
            batches.extend(todo[i:i + config.batch_size]
                           for i in range(0, len(todo), config.batch_size))
        ctx.total = total
        ctx.done_before = total - sum(len(b) for b in batches)
        return self._then_judge(ctx, batches)

    def _then_judge(self, ctx: JobContext[EvalConfig],
                    batches: list[list[Ask]]) -> Iterator[Sequence[Ask]]:
        """Return the answer batches, then the judge's (pairs computed once the answers are stored)."""
        yield from batches
        config = ctx.config
        judge = config.equivalence_judge
        if judge is None:
            return
        name = redact_spec(judge)
        pairs = undecided_pairs(ctx.con, config.eval_id)
        known = judge_verdicts(ctx.con, config.eval_id, name)
        todo = [Ask("judge", judge, "", a, 0, name, "cot", b) for a, b in pairs
                if (a, b) not in known]
        ctx.total = (ctx.total or 0) + len(pairs)
        ctx.done_before += len(pairs) - len(todo)
        for i in range(0, len(todo), config.batch_size):
            yield todo[i:i + config.batch_size]

    def _specs(self, config: EvalConfig) -> list[str]:
        """Return the specs clients are built for, without their modes, the job's own first."""
        judge = [config.equivalence_judge] if config.equivalence_judge else []
        return list(dict.fromkeys(_base(s) for s in (*config.solvers, *config.models, *judge)))

    @contextmanager
    def _clients(self, ctx: JobContext[EvalConfig]) -> Iterator[None]:
        config, state = ctx.config, _eval_state(ctx)
        models = ctx.env.models
        for spec in self._specs(config)[1:]:
            client = models.build(solver_settings(spec, concurrency=config.concurrency,
                                                  timeout_s=config.timeout_s))
            models.check_reachable(client)
            if ctx.executor.name == "ray":  # its workers rebuild it: no secret through Ray
                from personahub.executors.ray_batches import check_ray_client

                check_ray_client(client)
            state.clients[spec] = client
        if config.batching:  # an in-process engine has no Batch API: refused before any call
            from personahub.models.provider_batch import batch_endpoint

            for asked in (ctx.client, *state.clients.values()):
                batch_endpoint(cast(Any, asked))
        spilling = [c for c in state.clients.values() if ctx.spill is not None
                    and c is not ctx.client and hasattr(c, "spill_to")]
        for client in spilling:  # their attempts outlive a kill too
            client.spill_to(ctx.spill)
        try:
            yield
        finally:
            for client in spilling:
                client.spill_to(None)

    def running(self, ctx: JobContext[EvalConfig]) -> AbstractContextManager[None]:
        """Return the other specs' clients, built, checked and spilling while the job runs."""
        return self._clients(ctx)

    def asker(self, ctx: JobContext[EvalConfig]) -> EvalAsker | BatchedEvalAsker:
        """Return the asker; with --provider-batch each spec's calls go as provider batches."""
        state = _eval_state(ctx)
        asker = EvalAsker(ctx.config.primary, state.clients)
        if not ctx.config.batching:
            return asker
        state.batched = BatchedEvalAsker(asker, ctx, self._specs(ctx.config))
        return state.batched

    def commit(self, ctx: JobContext[EvalConfig], batch: Sequence[Ask],
               result: list[StructuredResult[Any]]) -> BatchOutcome:
        """Return the batch's answers or verdicts, with its calls under their own client's model names."""
        config, state = ctx.config, _eval_state(ctx)
        first = batch[0]
        own = _base(first.spec) == _base(config.primary)
        client = ctx.caller if own else state.clients[_base(first.spec)]
        judging = first.role == "judge"
        rows, errors = [], []
        for ask, answer in zip(batch, result, strict=True):
            if answer.value is None:
                errors.append(call_error(answer))
            elif judging:
                rows.append(_verdict_row(config.eval_id, ask, answer.value, client.label))
            else:
                rows.append(_answer_row(config.eval_id, ask, answer.value, client.label))
        if judging:
            state.judged += len(rows)
        else:
            summary = state.solved[(first.role, first.name)]
            summary.written += len(rows)
            summary.failed += len(errors)
        table = "eval_equivalence" if judging else "eval_answers"
        return BatchOutcome(rows={table: rows}, calls=result if own else (),
                            asked=len(batch), kept=len(rows), errors=errors,
                            then=None if own else partial(_write_calls, ctx.con, ctx.ref, client,
                                                          result))

    def stop_note(self, ctx: JobContext[EvalConfig]) -> str:
        return f" ({ctx.done_before + ctx.asked} of {ctx.total} answers stored)"

    def label(self, config: Mapping[str, object]) -> str:
        return labels.evaluation(config)

    def report(self, summary: EvalSummary, db: Path) -> list[str]:
        return summary_lines(summary)

    def summary(self, ctx: JobContext[EvalConfig]) -> EvalSummary:
        """Verification and scores from the stored answers."""
        from personahub.core.call_log import call_counts
        from personahub.pipelines.evaluate_scores import contamination_counts

        config, con = ctx.config, ctx.con
        eval_id = config.eval_id
        split = split_job(con, config.source, test_share=config.test_share,
                          test_n=config.test_n, seed=config.seed, eval_id=eval_id,
                          threshold=config.family_threshold)
        judge = redact_spec(config.equivalence_judge) if config.equivalence_judge else None
        verdicts = judge_verdicts(con, eval_id, judge) if judge else {}
        same = same_answers(verdicts)
        counts = verify_items(con, eval_id, agree=config.agree, same=same)
        state = _eval_state(ctx)
        models = config.names("model")
        by_file = contamination_counts(con, eval_id)
        flagged = con.execute("SELECT count(DISTINCT item_id) FROM eval_contamination WHERE "
                              "eval_id = ?", [eval_id]).fetchone()
        summary = EvalSummary(eval_id, split, int(flagged[0]) if flagged else 0,
                              list(state.solved.values()), counts["verified"],
                              counts["unverified"], agreement_matrix(con, eval_id, same),
                              [score(con, eval_id, spec, mode=config.mode, same=same)
                               for spec in config.models],
                              call_counts(con, job_id=ctx.job_id), job_id=ctx.job_id,
                              undecided=len(undecided_pairs(con, eval_id)), judge=judge,
                              judged_equal=sum(verdicts.values()), judged=len(verdicts),
                              batches=state.batched.line() if state.batched else None,
                              by_reference=counts["by reference"],
                              item_set=item_set(con, config.source) if config.job is None
                              else None, family_threshold=config.family_threshold,
                              contaminated_by=by_file,
                              kept_contaminated=config.keep_contaminated)
        if config.models:
            summary.groups = group_scores(con, eval_id, models, same=same)
            summary.differences = model_differences(con, eval_id, models, seed=config.seed,
                                                    same=same)
        return summary


EVALUATION = register(EvaluationSpec())


def evaluation_resume(config: EvalConfig) -> str | None:
    """Return this config's job id when its database already holds the job (to resume), else None."""
    return stored_job_id(config.db, evaluation_id_for(config))


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def summary_lines(summary: EvalSummary) -> list[str]:
    """Return the console's lines: the items and what was left out, the split and its families, the
    verified share, the agreement matrix, scores with intervals."""
    s, items = summary.split, summary.item_set
    source = f"items {items.path}" if items is not None else f"job {s.job_id}"
    lines = [f"evaluation {summary.job_id or summary.eval_id} of {source}: {s.items} items, "
             f"test {s.test}, train {s.train}"
             + (" (no --test-n or --test-share: every item is a test item)"
                if items is not None and not s.train else "")]
    if items is not None:
        answers = (f"answer column {items.answer_column!r}: {items.with_reference} with a "
                   "reference answer" if items.answer_column else "no answer column")
        lines.append(f"items: {_rows(items.rows)}, question column {items.question_column!r}, "
                     f"{answers}" + (f"; left out {_rows(items.left_out)} without a question"
                                     if items.left_out else ""))
    if summary.contaminated:
        where = ", ".join(f"{Path(bench).name} {n}" for bench, n in summary.contaminated_by.items())
        lines.append(f"contaminated: {summary.contaminated} items flagged by --against ({where}), "
                     + ("kept in the split (--keep-contaminated)" if summary.kept_contaminated
                        else "left out of both sides"))
    lines.append(f"near-duplicate families (word Jaccard >= {summary.family_threshold:g}): "
                 + (f"{s.families}, {s.family_items} items, each family on one side"
                    if s.families else "none"))
    share = summary.verified_share
    lines.append(f"verified: {summary.verified} of {summary.verified + summary.unverified} test "
                 f"items" + (f" ({share:.1%})" if share is not None else "")
                 + (f": {summary.by_reference} by their reference answer, "
                    f"{summary.verified - summary.by_reference} by solver agreement"
                    if summary.by_reference else ""))
    specs = list(summary.matrix)
    if len(specs) > 1:
        lines.append("agreement: " + "; ".join(
            f"{a} ~ {b} {summary.matrix[a][b]:.0%}" for i, a in enumerate(specs)
            for b in specs[i + 1:] if summary.matrix[a][b] is not None))
    for sc in summary.scores:
        if sc.accuracy is None:
            lines.append(f"score {sc.spec}: no verified items to score")
            continue
        acc = f"{sc.accuracy:.1%}"
        lines.append(f"score {sc.spec}: {sc.correct}/{sc.total} = {acc} "
                     f"(95% Wilson {sc.low:.1%}-{sc.high:.1%})")
    if summary.judge is not None:
        lines.append(f"equivalence judge {summary.judge}: {summary.judged} of "
                     f"{summary.undecided} undecidable answer pairs judged, "
                     f"{summary.judged_equal} equal")
    elif summary.undecided:
        lines.append(f"equivalence: {summary.undecided} answer pairs math-verify cannot decide "
                     "count as not equal (--equivalence-judge SPEC asks a model)")
    if summary.groups is not None:
        lines.extend(breakdown_lines(summary.groups, summary.differences))
    calls = ", ".join(f"{k}={v}" for k, v in summary.calls.items()) or "none"
    lines.append(f"model calls: {calls}")
    if summary.batches:
        lines.append(summary.batches)
    return lines
