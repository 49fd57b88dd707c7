"""personahub calibrate: ask personas matched to a survey's groups the survey's questions, and
score their answers against the real respondents', group by group, beside baselines.

Refusal options are offered, as OpinionQA did, and left out when scoring; an ask without a valid
option is a failure, asked again on resume. Scores are recomputed from the stored answers, so a
resumed job scores as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from personahub.analysis.calibration_store import (
    answer_totals,
    answered_keys,
    answers_by_steering,
    fold_rows,
)
from personahub.analysis.survey import Question
from personahub.analysis.survey_read import read_survey
from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.kernel import (
    BatchOutcome,
    JobContext,
    engine,
    register,
)
from personahub.core.plan_limits import MAX_GROUP_N, check_plan
from personahub.core.validate import check_int
from personahub.models.failures import call_error
from personahub.pipelines.batches import answered, remaining
from personahub.pipelines.calibrate_archetypes import (
    ArchetypeMethod,
    archetype_respondent,
    check_archetypes,
    describe,
    grouping,
    price_lines,
    price_table,
)
from personahub.pipelines.calibrate_data import (
    GroupKey,
    Selected,
    draw_panels,
    group_rows,
    human_rows,
    load_panels,
    load_survey,
    panel_personas,
    population_query,
    profiles,
    question_rows,
    select,
    survey_sha1,
)
from personahub.pipelines.calibrate_fit import (
    FOLDS,
    MIN_FOLDS,
    FitCandidate,
    FitOutcome,
    candidates,
    check_fit,
    fit_ask_count,
    fit_asks,
    fold_split,
)
from personahub.pipelines.elicit import check_elicit, find, job_order, parse, parse_all
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    QuestionPlan,
    Setup,
    group_key,
)
from personahub.pipelines.elicit.logprobs import LOGPROBS
from personahub.pipelines.elicit.sample import SAMPLE, Sample
from personahub.pipelines.model_fields import EngineFields, check_model_fields
from personahub.pipelines.prompts.calibration import NO_PERSONA, STEERINGS
from personahub.pipelines.prompts.population import attribute_lines
from personahub.pipelines.shipped_spec import ShippedSpec
from personahub.pipelines.survey_profile import model_name

if TYPE_CHECKING:
    from personahub.pipelines.calibrate_scores import Scored

LEFT_OUT = "questions_left_out"  # stored with the job: the survey's questions not asked, by why
FIT_MODEL = "fit_model"  # stored with a fit: the served model it asks (its profile's)
MAX_FOLDS = 50


@dataclass(frozen=True, kw_only=True)
class CalibrateConfig(EngineFields):
    """What a calibration makes (stored with the job) and, in the engine fields, how this
    invocation asks.
    """

    survey: str  # an OpinionQA wave folder, a long CSV or a respondent-level CSV/Parquet
    population: str  # a sample-population id, or "all" (every persona of the hub)
    carve: tuple[str, ...] = ()  # further carve conditions on the population
    n: int = 20  # personas per group
    no_persona_n: int | None = None  # asks per question without a persona (None: n)
    steering: tuple[str, ...] = ("persona",)
    questions: tuple[str, ...] = ()  # question ids (default: every scorable one)
    attributes: tuple[str, ...] = ()  # survey attributes (default: all)
    limit: int | None = None  # the first questions only
    offer_refusal: bool = True  # the survey's refusal options are in the enum
    seed: int = 0
    elicit: tuple[str, ...] = (SAMPLE,)  # how answers are elicited (pipelines/elicit/)
    dispersion: str = "none"  # "temper": also score the panels tempered (calibration_dispersion)
    archetypes: tuple[int, ...] = ()  # K values: one call per archetype (calibrate_archetypes.py)
    fit: bool = False  # choose a survey profile on training folds, score it held out (calibrate_fit)
    folds: int = FOLDS  # --fit: the folds the questions are dealt into (fold 0 is held out)
    batch_size: int = engine(256)

    def __post_init__(self) -> None:
        for name in ("carve", "steering", "questions", "attributes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "elicit", check_elicit(
            (self.elicit,) if isinstance(self.elicit, str) else self.elicit))
        object.__setattr__(self, "archetypes", check_archetypes(
            (self.archetypes,) if isinstance(self.archetypes, int) else self.archetypes))
        if not str(self.survey).strip():
            raise UsageError("give a SURVEY: an OpinionQA wave folder or a long CSV")
        if not str(self.population).strip():
            raise UsageError("--population: give a population id (personas sample-population) "
                             "or 'all'")
        if not self.steering:
            raise UsageError(f"--steering: give one or more of {', '.join(STEERINGS)}")
        for steering in self.steering:
            if steering not in STEERINGS:
                raise UsageError(f"--steering {steering!r}: use one of {', '.join(STEERINGS)} "
                                 "(the no-persona baseline is always asked)")
        if len(set(self.steering)) != len(self.steering):
            raise UsageError("--steering: a steering is given twice")
        if self.dispersion not in ("none", "temper"):
            raise UsageError(f"--dispersion {self.dispersion!r}: use none or temper")
        check_int(self.folds, "--folds", low=MIN_FOLDS, high=MAX_FOLDS)
        if self.fit and self.archetypes:
            raise UsageError("--fit chooses how each agent is asked; --archetypes is scored "
                             "without it: give one of them")
        if self.fit and self.dispersion != "none":
            raise UsageError("--fit fits its own temperature on the training folds; leave out "
                             "--dispersion")
        check_int(self.n, "--n", low=1, high=MAX_GROUP_N)
        if self.no_persona_n is not None:
            check_int(self.no_persona_n, "--no-persona-n", low=0, high=MAX_GROUP_N)
        if self.limit is not None:
            check_int(self.limit, "--limit", low=1)
        check_model_fields(self)
        check_int(self.batch_size, "batch size", low=1)
        population_query(self.population, self.carve).conditions()  # a bad --carve: one line

    @property
    def asks_without_persona(self) -> int:
        """The no-persona asks per question."""
        return self.n if self.no_persona_n is None else self.no_persona_n


class CalibrationAsker:
    """Ask the model for a batch, holding nothing of the database (a Ray worker rebuilds it); also
    encode answers for Ray workers (a ShardCodec).

    Each ask is made by the method of its row: the given ones (a sample steering, "none",
    "archetypes:K"), else the registered method its row names.
    """

    def __init__(self, questions: Mapping[str, tuple[str, tuple[str, ...]]],
                 personas: Mapping[str, tuple[str, dict[str, str]]],
                 groups: Mapping[str, str] | None = None,
                 texts: Mapping[str, Mapping[str, str]] | None = None,
                 methods: Mapping[str, ElicitMethod] | None = None) -> None:
        self.inputs = AskInputs(
            questions=dict(questions),  # id -> (text, offered options)
            personas=dict(personas),  # id -> (text, canonical demographics)
            groups=dict(groups or {}),  # respondent -> its "- Name: label" lines
            texts={label: dict(own) for label, own in (texts or {}).items()})  # method's own
        self.methods = dict(methods or {})  # row -> its method

    def method(self, row: str) -> ElicitMethod:
        """Return the method that asks a row's asks."""
        method = self.methods.get(row) or find(row)
        if method is None:
            raise KeyError(f"no elicitation method asks row {row!r}")
        return method

    async def run_batch(self, batch: Sequence[Ask], caller: StructuredCaller) -> list[Answer]:
        """Ask every ask of a batch concurrently (the client bounds the calls in flight)."""
        return list(await asyncio.gather(*(self.method(ask.method).ask(ask, self.inputs, caller)
                                           for ask in batch)))

    # ShardCodec: how an answer travels from a Ray worker
    def key(self, ask: Ask) -> str:
        return "\x1f".join((ask.question_id, ask.method, ask.respondent))

    def dump(self, answer: Answer) -> str:
        return json.dumps([answer.option, answer.reason])

    def calls(self, answer: Answer) -> Sequence[StructuredResult[Any]]:
        return (answer.call,)

    def load(self, ask: Ask, value: str, calls: list[StructuredResult[Any]]) -> Answer:
        option, reason = json.loads(value)
        return Answer(ask, option, reason, calls[0])


@dataclass
class CalibrationSummary:
    """What a calibration did and how it scored, for the console, the API and tests."""

    job_id: str
    survey: str
    population: str
    steering: tuple[str, ...]
    questions: int = 0
    # the survey's questions not asked: why -> their ids (empty: every question was asked)
    left_out: dict[str, tuple[str, ...]] = field(default_factory=dict)
    groups: int = 0
    empty_groups: list[str] = field(default_factory=list)  # no persona matched them
    small_groups: list[str] = field(default_factory=list)  # fewer than n matched
    personas: int = 0
    asks: int = 0  # planned in all
    answered: int = 0  # an option (refusals included)
    refused: int = 0  # a refusal option
    skipped_done: int = 0  # answered before this run (a resume)
    elicit: tuple[str, ...] = (SAMPLE,)
    calls: dict[str, int] = field(default_factory=dict)  # planned calls per method
    answered_calls: dict[str, int] = field(default_factory=dict)  # calls with an answer
    cells: dict[str, int] = field(default_factory=dict)  # question x group pairs per method
    engine: str = ""
    offline: bool = False
    per_attribute: pd.DataFrame = field(default_factory=pd.DataFrame)  # representativeness
    # the overall row weighing each question x group alike
    overall_per_group: pd.DataFrame = field(default_factory=pd.DataFrame)
    panel_sizes: pd.DataFrame = field(default_factory=pd.DataFrame)  # effective, per attribute
    verdict: list[str] = field(default_factory=list)  # the scores in plain sentences
    batches: str | None = None  # --provider-batch: what its provider batches did in this run
    dispersion: pd.DataFrame = field(default_factory=pd.DataFrame)  # entropy and SD ratios
    sd_per_question: pd.DataFrame = field(default_factory=pd.DataFrame)  # model, per steering
    weighting: str = ""  # respondent-level input: weighted or not (empty: counts as given)
    logprobs_temperature: float | None = None  # --elicit logprobs: its fitted temperature
    logprobs_fit_questions: int = 0  # --elicit logprobs: the held-out questions it is fitted on
    archetypes: tuple[int, ...] = ()  # --archetypes K values
    price: pd.DataFrame = field(default_factory=pd.DataFrame)  # the archetypes' price table
    # the model's overall means with intervals over questions and over panel answers
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    panel_intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    temperatures: pd.DataFrame = field(default_factory=pd.DataFrame)  # --dispersion temper
    # the questions each source scored (a few-shot or logprobs row leaves some out)
    question_counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    fit: FitOutcome | None = None  # --fit: what it chose on the training folds
    standings: pd.DataFrame = field(default_factory=pd.DataFrame)  # model rows vs baselines
    # top-option accuracy and rank correlation per question x group, per source
    ranking: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def failed(self) -> int:
        """Asks without an answer (asked again on resume)."""
        return self.asks - self.answered


@dataclass
class CalibrationState:
    """One job's own state: the questions, panels, panel personas, summary and archetype groupings.
    """

    selected: Selected
    panels: dict[GroupKey, list[str]]
    personas: dict[str, tuple[str, dict[str, str]]]
    summary: CalibrationSummary
    archetypes: dict[int, tuple[list[str], Any]] = field(default_factory=dict)  # K -> grouping
    # the job's methods in asking and scoring order: sampled first, then --elicit's order, then
    # --archetypes' (--fit: its configurations)
    methods: tuple[ElicitMethod, ...] = ()
    folds: dict[str, int] = field(default_factory=dict)  # --fit: each question's fold


def _state(ctx: JobContext[CalibrateConfig]) -> CalibrationState:
    state: CalibrationState = ctx.state
    return state


def _first_summary(ctx: JobContext[CalibrateConfig], selected: Selected,
                   panels: Mapping[GroupKey, Sequence[str]], personas: int) -> CalibrationSummary:
    """Start a job's summary: what it asks of whom, and the groups no or few personas matched."""
    config = ctx.config
    all_groups = [(qid, key) for qid in selected.questions
                  for key in (g.key for g in selected.groups[qid])]
    names = list(dict.fromkeys(f"{a}={g}" for _, (a, g) in all_groups))
    sizes = {f"{a}={g}": len(panels.get((a, g), [])) for _, (a, g) in all_groups}
    return CalibrationSummary(
        job_id=ctx.job_id, survey=config.survey, population=config.population,
        steering=config.steering, elicit=config.elicit, archetypes=config.archetypes,
        questions=len(selected.questions),
        left_out={why: tuple(ids) for why, ids in (ctx.stored.get(LEFT_OUT) or {}).items()},
        groups=len(names), empty_groups=[n for n in names if sizes[n] == 0],
        small_groups=[n for n in names if 0 < sizes[n] < config.n], personas=personas)


def asks_per_method(asks: Iterable[Ask], methods: Mapping[str, str]) -> dict[str, int]:
    """Count the calls per method; methods maps an ask's row to its method (else the row's own)."""
    counts: dict[str, int] = {}
    for ask in asks:
        method = methods.get(ask.method, ask.method)
        counts[method] = counts.get(method, 0) + 1
    return counts


def offered(question: Question, offer_refusal: bool) -> tuple[str, ...]:
    """Return the options a question's enum holds: the substantive ones, and its refusals if offered."""
    return question.options if offer_refusal else question.substantive


class CalibrationSpec(ShippedSpec[CalibrateConfig, Sequence[Ask], list[Answer], CalibrationSummary],
                      kind="calibration"):
    """The job spec behind personahub calibrate."""

    config_type = CalibrateConfig
    independent_batches = True

    def prepare(self, ctx: JobContext[CalibrateConfig]) -> None:
        """Prepare the questions, human answers and panels: read and drawn, or the job's on resume."""
        config = ctx.config
        if ctx.resumed:
            selected = load_survey(ctx.con, ctx.job_id, config.survey)
            panels = load_panels(ctx.con, ctx.job_id)
        else:
            survey = read_survey(config.survey)
            selected = select(survey, questions=config.questions, attributes=config.attributes,
                              limit=config.limit)
            ctx.stored["survey_sha1"] = survey_sha1(survey)
            ctx.stored[LEFT_OUT] = {why: list(ids) for why, ids in selected.left_out.items()}
            panels = draw_panels(ctx.con, selected.all_groups(), population_query(
                config.population, config.carve), config.n, config.seed)
        everyone = panel_personas(ctx.con, panels)
        if ctx.resumed and len(everyone) < len({p for m in panels.values() for p in m}):
            raise PersonahubError(f"--resume {ctx.job_id}: personas of the job's panels are gone "
                                  f"from --db {ctx.db}")
        if not everyone:
            raise PersonahubError(
                f"--population {config.population}: no persona matches any group of "
                f"{config.survey} (personas need demographics: personas sample-population, or "
                "an attribute table import; docs/calibration.md)")
        folds: dict[str, int] = {}
        if config.fit:  # a method or --folds the fit cannot take: one line, nothing asked
            check_fit(parse_all(config.elicit), selected.questions, config.folds)
            folds = (fold_rows(ctx.con, ctx.job_id) if ctx.resumed
                     else fold_split(selected.questions, config.folds, config.seed))
        else:
            for method in parse_all(config.elicit):  # K too large: one line, nothing asked
                method.held_out(selected.questions, config.seed)
        summary = _first_summary(ctx, selected, panels, len(everyone))
        if not ctx.resumed:
            summary.weighting = survey.weighting
        personas = profiles(everyone)
        groupings = {k: grouping(personas, k, config.seed) for k in config.archetypes}
        methods: tuple[ElicitMethod, ...] = (
            *job_order(parse_all(config.elicit)),
            *(ArchetypeMethod(k, len(grouped)) for k, (_, grouped) in groupings.items()))
        if config.fit:
            methods = tuple(FitCandidate(config=c) for c in candidates(
                parse_all(config.elicit), config.steering, selected.survey, selected.groups,
                folds, config.seed))
        ctx.state = CalibrationState(selected, panels, personas, summary, archetypes=groupings,
                                     methods=methods, folds=folds)
        if not ctx.resumed:  # a plan too large is refused before anything is recorded
            check_plan(self._planned(ctx), "calibrate", "--n, --no-persona-n, --question, "
                                                        "--attribute or --limit")

    def start(self, ctx: JobContext[CalibrateConfig]) -> BatchOutcome:
        """Return the job's row, its questions, the human answers it scores against, its panels."""
        state, config = _state(ctx), ctx.config
        job = {"job_id": ctx.job_id, "survey": config.survey,
               "survey_sha1": ctx.stored["survey_sha1"], "population": config.population,
               "n": config.n, "no_persona_n": config.asks_without_persona,
               "steering": json.dumps(list(config.steering)),
               "offer_refusal": config.offer_refusal, "llm": ctx.caller.label}
        rows = {"calibration_jobs": [job],
                "calibration_questions": question_rows(ctx.job_id, state.selected),
                "calibration_human": human_rows(ctx.job_id, state.selected),
                "calibration_panels": group_rows(ctx.job_id, state.panels)}
        if config.fit:
            ctx.stored[FIT_MODEL] = model_name(ctx.caller)
            rows["calibration_folds"] = [{"job_id": ctx.job_id, "question_id": qid, "fold": fold}
                                         for qid, fold in state.folds.items()]
        return BatchOutcome(rows=rows, calls=self._probe(ctx))

    def _probe(self, ctx: JobContext[CalibrateConfig]) -> list[StructuredResult[Any]]:
        """Make one ask of each method that needs a capability a server may lack (logprobs) first,
        so such a server stops the job before anything is written.
        """
        if ctx.caller.is_offline:
            return []
        probing = {m.label for m in _state(ctx).methods if m.probes}
        firsts: dict[str, Ask] = {}
        for ask in self._asks(ctx) if probing else ():
            if ask.method in probing:
                firsts.setdefault(ask.method, ask)
        if not firsts:
            return []
        answers = ctx.run(self.plain_asker(ctx).run_batch(list(firsts.values()), ctx.caller))
        return [answer.call for answer in answers]

    def _plans(self, ctx: JobContext[CalibrateConfig]) -> Iterator[QuestionPlan]:
        """Yield each question's plan in order: its groups with a panel and their personas."""
        state = _state(ctx)
        for qid in state.selected.questions:
            asked = [g.key for g in state.selected.groups[qid] if state.panels.get(g.key)]
            people = tuple(dict.fromkeys(pid for key in asked for pid in state.panels[key]))
            yield QuestionPlan(qid, tuple(asked), people, ctx.config.steering)

    def _held_out(self, ctx: JobContext[CalibrateConfig]) -> dict[str, frozenset[str]]:
        """Return each method's held-out questions, by its label."""
        questions, seed = _state(ctx).selected.questions, ctx.config.seed
        return {m.label: frozenset(m.held_out(questions, seed)) for m in _state(ctx).methods}

    def _asks(self, ctx: JobContext[CalibrateConfig]) -> list[Ask]:
        """Plan every ask in order: per question, each method's (the sample method's per steering
        and panel persona), then the no-persona asks (--fit: calibrate_fit.fit_asks).
        """
        state = _state(ctx)
        if ctx.config.fit:
            return fit_asks(self._plans(ctx), [m.config for m in state.methods
                                               if isinstance(m, FitCandidate) and m.config],
                            state.folds, ctx.config.asks_without_persona)
        held = self._held_out(ctx)
        asks: list[Ask] = []
        for plan in self._plans(ctx):
            for method in _state(ctx).methods:
                asks += method.asks(plan, held[method.label])
            asks += [Ask(plan.question_id, NO_PERSONA, f"#{k}", None)
                     for k in range(ctx.config.asks_without_persona)]
        return asks

    def _planned(self, ctx: JobContext[CalibrateConfig]) -> int:
        """Count the asks _asks returns without making them (a plan too large to hold is refused
        before it is made)."""
        state, config = _state(ctx), ctx.config
        if config.fit:
            return fit_ask_count(self._plans(ctx), [m.config for m in state.methods
                                                    if isinstance(m, FitCandidate) and m.config],
                                 state.folds, config.asks_without_persona)
        held = self._held_out(ctx)
        return sum(sum(m.ask_count(plan, held[m.label]) for m in state.methods)
                   + config.asks_without_persona for plan in self._plans(ctx))

    def _row_methods(self, ctx: JobContext[CalibrateConfig]) -> dict[str, str]:
        """Map each row an ask answers for to its method's label ("none": the no_persona baseline)."""
        rows = {row: m.label for m in _state(ctx).methods for row in m.rows(ctx.config.steering)}
        return rows | {NO_PERSONA: "no_persona"}

    def _count_calls(self, ctx: JobContext[CalibrateConfig], asks: Sequence[Ask]) -> None:
        """Count the calls per method and the question x group pairs each scores, for the summary."""
        state = _state(ctx)
        summary = state.summary
        summary.calls = asks_per_method(asks, self._row_methods(ctx))
        pairs = [(qid, g.key) for qid in state.selected.questions
                 for g in state.selected.groups[qid] if state.panels.get(g.key)]
        summary.cells = {}
        if ctx.config.fit:  # each configuration, on the questions it does not show
            for method in state.methods:
                shown = {e.question_id for e in method.config.examples} if isinstance(
                    method, FitCandidate) and method.config else set()
                summary.cells[method.label] = sum(1 for qid, _ in pairs if qid not in shown)
            return
        chosen = parse_all(ctx.config.elicit)  # in --elicit's order, then the archetype rows
        for method in (*chosen, *state.methods[len(chosen):]):
            shown = set(method.held_out(state.selected.questions, ctx.config.seed))
            summary.cells[method.label] = sum(1 for qid, _ in pairs if qid not in shown)

    def plan(self, ctx: JobContext[CalibrateConfig]) -> Iterator[Sequence[Ask]]:
        """Plan the asks not yet answered, in batches."""
        asks = self._asks(ctx)
        batches = remaining(ctx, asks, answered_keys(ctx.con, ctx.job_id),
                            lambda a: (a.question_id, a.method, a.respondent),
                            ctx.config.batch_size)
        summary = _state(ctx).summary
        summary.asks, summary.skipped_done = len(asks), ctx.done_before
        self._count_calls(ctx, asks)
        return batches


    def plain_asker(self, ctx: JobContext[CalibrateConfig]) -> CalibrationAsker:
        """Build the job's asker, calling the model directly."""
        state = _state(ctx)
        config, survey = ctx.config, state.selected.survey
        questions = {qid: (q.text, offered(q, config.offer_refusal))
                     for qid, q in survey.questions.items()}
        groups = {group_key(*g.key): attribute_lines(dict(g.conditions)) or g.name
                  for g in state.selected.all_groups()}
        for k, (ids, grouped) in state.archetypes.items():
            groups |= {archetype_respondent(k, a): describe(state.personas, ids, grouped, a)
                       for a in range(len(grouped))}
        setup = Setup(survey, state.selected.questions,
                      [(g.attribute, g.labels) for g in state.selected.all_groups()],
                      state.panels, state.personas, config.seed)
        texts = {m.label: m.texts(setup) for m in state.methods}
        rows = {row: m for m in state.methods for row in m.rows(config.steering)}
        return CalibrationAsker(questions, state.personas, groups,
                                {label: own for label, own in texts.items() if own},
                                rows | {NO_PERSONA: Sample()})

    def commit(self, ctx: JobContext[CalibrateConfig], batch: Sequence[Ask],
               result: list[Answer]) -> BatchOutcome:
        """Return the batch's answers; one error per ask without one (for the failure policy)."""
        survey = _state(ctx).selected.survey

        def row(answer: Answer) -> dict[str, object] | None:
            if answer.option is None:
                return None
            ask = answer.ask
            return {"job_id": ctx.job_id, "question_id": ask.question_id,
                    "steering": ask.method, "respondent": ask.respondent,
                    "persona_id": ask.persona_id, "answer": answer.option,
                    "refused": answer.option in survey.questions[ask.question_id].refusals,
                    "reason": answer.reason, "model": ctx.caller.label}

        return answered(batch, result, row, lambda a: call_error(a.call),
                        table="calibration_answers")

    def summary(self, ctx: JobContext[CalibrateConfig]) -> CalibrationSummary:
        """Score the answers (replacing the job's earlier scores) and sum the job up."""
        from personahub.analysis.calibration_ranking import (
            ranking_cells,
            ranking_summary,
            ranking_verdict,
        )
        from personahub.analysis.calibration_verdict import intervals, standings, verdict
        from personahub.pipelines.calibrate_questions import questions_per_row
        from personahub.pipelines.calibrate_scores import (
            dispersion_table,
            fitted_temperatures,
            logprobs_temperature,
            panel_intervals_of,
            panel_sizes_of,
            per_attribute,
            score_job,
            sd_by_question,
        )

        summary = _state(ctx).summary
        if not summary.asks:
            self.plan(ctx)
        summary.engine, summary.offline = ctx.caller.label, ctx.caller.is_offline
        summary.answered, summary.refused = answer_totals(ctx.con, ctx.job_id)
        methods = self._row_methods(ctx)
        summary.answered_calls = {}
        by_steering = answers_by_steering(ctx.con, ctx.job_id)
        for row, count in by_steering.items():
            method = methods.get(row, row)
            summary.answered_calls[method] = summary.answered_calls.get(method, 0) + count
        scored = self._fitted(ctx) if ctx.config.fit else score_job(ctx.con, ctx.job_id)
        summary.per_attribute = per_attribute(scored.summary)
        summary.overall_per_group = per_attribute(scored.summary, overall="per-group").head(1)
        summary.dispersion = dispersion_table(scored.summary)
        summary.sd_per_question = sd_by_question(scored.scores)
        summary.temperatures = fitted_temperatures(scored.scores)
        summary.panel_sizes = panel_sizes_of(scored.scores)
        summary.question_counts = questions_per_row(scored.scores)
        summary.verdict = verdict(scored.scores, ctx.config.seed)
        summary.intervals = intervals(scored.scores, ctx.config.seed)
        summary.standings = standings(scored.scores, ctx.config.seed)
        summary.ranking = ranking_summary(ranking_cells(scored.scores, _state(ctx).selected.survey))
        summary.verdict += ranking_verdict(summary.ranking)
        summary.panel_intervals = panel_intervals_of(
            scored.scores, _state(ctx).selected.survey, ctx.config.seed)
        summary.logprobs_temperature = (None if ctx.config.fit
                                        else logprobs_temperature(ctx.con, ctx.job_id))
        if LOGPROBS in ctx.config.elicit and not ctx.config.fit:
            summary.logprobs_fit_questions = len(parse(LOGPROBS).held_out(
                _state(ctx).selected.questions, ctx.config.seed))
        if ctx.config.archetypes:
            summary.price = price_table(scored.scores, _state(ctx).selected.survey.questions,
                                        by_steering)
        summary.batches = self.batches_line(ctx)
        return summary

    def _fitted(self, ctx: JobContext[CalibrateConfig]) -> Scored:
        """Choose the survey profile on the training folds, store it, and score it held out."""
        from personahub.pipelines.calibrate_fit import score_fit

        state, config = _state(ctx), ctx.config
        scored, state.summary.fit = score_fit(
            ctx.con, ctx.job_id, survey=state.selected.survey, groups=state.selected.groups,
            panels=state.panels,
            configs=[m.config for m in state.methods if isinstance(m, FitCandidate) and m.config],
            folds=state.folds, k=config.folds, no_persona_n=config.asks_without_persona,
            seed=config.seed, model=str(ctx.stored.get(FIT_MODEL) or model_name(ctx.caller)),
            llm=ctx.caller.label)
        return scored

    def stop_note(self, ctx: JobContext[CalibrateConfig]) -> str:
        answered, _ = answer_totals(ctx.con, ctx.job_id)
        return f" ({answered} of {_state(ctx).summary.asks} answers written)"

    def report(self, summary: CalibrationSummary, db: Path) -> list[str]:
        """Report what the job did and its per-attribute representativeness, as console lines."""
        from personahub.analysis.calibration_ranking import ranking_lines
        from personahub.pipelines.calibrate_fit import fit_lines, held_out_title
        from personahub.pipelines.calibrate_questions import left_out_lines, question_count_lines
        from personahub.pipelines.calibrate_scores import (
            dispersion_lines,
            elicit_lines,
            interval_lines,
            overall_lines,
            size_lines,
            table_lines,
            temperature_lines,
        )

        lines = [f"calibration {summary.job_id}: {summary.questions} questions x {summary.groups} "
                 f"groups, {summary.personas} personas; {summary.answered} of {summary.asks} "
                 f"answers ({summary.refused} refusals, {summary.failed} failed, "
                 f"{summary.skipped_done} already done) in {db}",
                 f"engine: {summary.engine}" + (" (offline engine, not a language model: the "
                                                "scores say nothing about people)"
                                                if summary.offline else "")]
        if summary.weighting:
            lines.append(f"human answers: one row per respondent, {summary.weighting}")
        lines += left_out_lines(summary.questions, summary.left_out)
        if summary.empty_groups:
            lines.append(f"{len(summary.empty_groups)} groups without a matching persona, not "
                         f"scored: {', '.join(summary.empty_groups[:6])}"
                         + (" ..." if len(summary.empty_groups) > 6 else ""))
        if summary.small_groups:
            lines.append(f"{len(summary.small_groups)} groups with fewer personas than --n: "
                         f"{', '.join(summary.small_groups[:6])}"
                         + (" ..." if len(summary.small_groups) > 6 else ""))
        if summary.fit is None:
            lines += elicit_lines(summary)
            lines += table_lines(summary.per_attribute)
        else:
            lines += fit_lines(summary.fit, summary.intervals, summary.standings,
                               calls=summary.calls, answered=summary.answered_calls)
            lines += table_lines(summary.per_attribute, held_out_title(summary.fit))
        lines += overall_lines(summary.per_attribute, summary.overall_per_group)
        lines += question_count_lines(summary.question_counts)
        lines += dispersion_lines(summary.dispersion, summary.sd_per_question)
        lines += temperature_lines(summary.temperatures)
        lines += size_lines(summary.panel_sizes)
        lines += interval_lines(summary.panel_intervals, summary.intervals)
        lines += price_lines(summary.price)
        lines += ranking_lines(summary.ranking)
        if summary.verdict:
            lines += [f"verdict: {summary.verdict[0]}", *(f"  {v}" for v in summary.verdict[1:])]
        if summary.batches:
            lines.append(summary.batches)
        if summary.failed:
            lines.append(f"resume to ask the failed ones again: {self.resume_hint(summary.job_id, db)}")
        lines.append(f"  personahub report --calibration {summary.job_id} --db {db} --out report/")
        if summary.fit is not None:
            lines.append(f"  personahub run SCENARIO --survey-profile {summary.job_id} --db {db}")
        return lines



CALIBRATION = register(CalibrationSpec())
