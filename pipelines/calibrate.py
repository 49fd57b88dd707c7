"""personahub calibrate: ask personas matched to a survey's groups the survey's questions, and
score their answers against the real respondents', group by group, beside baselines.

Refusal options are offered, as OpinionQA did, and left out when scoring; an ask without a valid
option is a failure, asked again on resume. Scores are recomputed from the stored answers, so a
resumed job scores as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from personahub.analysis.calibration_store import answer_totals, answered_keys, answers_by_steering
from personahub.analysis.survey import Question
from personahub.analysis.survey_read import read_survey
from personahub.core.contracts import CacheEntry, CallRecord, StructuredCaller, StructuredResult
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
    archetype_k,
    archetype_method,
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
from personahub.pipelines.calibrate_elicit import (
    DISTRIBUTION_PANEL,
    LETTERS,
    LOGPROBS,
    PANEL_SHOWN,
    SAMPLE,
    asks_held_out,
    asks_per_method,
    check_elicit,
    check_shares,
    distribution_schema,
    group_key,
    held_out,
    is_group_method,
    shares_of,
    shots_text,
)
from personahub.pipelines.model_fields import EngineFields, check_model_fields
from personahub.pipelines.prompts.calibration import (
    CALIBRATE_PURPOSE,
    NO_PERSONA,
    STEERINGS,
    calibration_messages,
    distribution_messages,
    logprobs_messages,
)
from personahub.pipelines.prompts.population import attribute_lines
from personahub.pipelines.shipped_spec import ShippedSpec
from personahub.tasks.survey import SURVEY_MAX_TOKENS, survey_schema

LEFT_OUT = "questions_left_out"  # stored with the job: the survey's questions not asked, by why


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
    elicit: tuple[str, ...] = (SAMPLE,)  # how answers are elicited (calibrate_elicit.py)
    dispersion: str = "none"  # "temper": also score the panels tempered (calibration_dispersion)
    archetypes: tuple[int, ...] = ()  # K values: one call per archetype (calibrate_archetypes.py)
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


class Ask(NamedTuple):
    """One call: a question, a steering, and who answers (a persona id, or "#k" with no persona)."""

    question_id: str
    steering: str
    respondent: str
    persona_id: str | None


class Answer(NamedTuple):
    """What one ask gave: the option chosen (None when no answer was valid), its reason, the call."""

    ask: Ask
    option: str | None
    reason: str | None
    call: StructuredResult[Any]

    @property
    def records(self) -> list[CallRecord]:
        return list(self.call.records)

    @property
    def cache_entries(self) -> list[CacheEntry]:
        return list(self.call.cache_entries)


def _respondent_number(respondent: str) -> int:
    return int(respondent.removeprefix("#"))


class CalibrationAsker:
    """Asks the model for a batch, holding nothing of the database (a Ray worker rebuilds it); also
    encodes answers for Ray workers (a ShardCodec).
    """

    def __init__(self, questions: Mapping[str, tuple[str, tuple[str, ...]]],
                 personas: Mapping[str, tuple[str, dict[str, str]]],
                 groups: Mapping[str, str] | None = None,
                 shots: Mapping[str, str] | None = None,
                 panels: Mapping[str, str] | None = None) -> None:
        self.questions = dict(questions)  # id -> (text, offered options)
        self.personas = dict(personas)  # id -> (text, canonical demographics)
        self.groups = dict(groups or {})  # group_key -> the group's "- Name: label" lines
        self.shots = dict(shots or {})  # "method\x1fgroup_key" -> the group's other answers
        self.panels = dict(panels or {})  # group_key -> some members' "- text" lines

    async def _stated(self, ask: Ask, caller: StructuredCaller) -> Answer:
        """A group-level ask: the modal option, with the group's stated shares (JSON) as the reason.
        """
        text, options = self.questions[ask.question_id]
        messages = distribution_messages(
            text, options, group=self.groups.get(ask.respondent, ask.respondent),
            shots=self.shots.get(f"{ask.steering}\x1f{ask.respondent}", ""),
            panel=self.panels.get(ask.respondent, "") if ask.steering == DISTRIBUTION_PANEL
            else "")
        limit = SURVEY_MAX_TOKENS + 16 * len(options)
        result = await caller.structured(distribution_schema(options), messages,
                                         purpose=f"{CALIBRATE_PURPOSE}-{ask.steering}",
                                         check=check_shares, max_tokens=limit)
        shares = None if result.value is None else shares_of(result.value)
        if shares is None:
            return Answer(ask, None, None, result)
        return Answer(ask, max(shares, key=lambda o: shares[o]), json.dumps(shares), result)

    async def _logprobs(self, ask: Ask, caller: StructuredCaller) -> Answer:
        """A logprobs ask: the modal option, with the option letters' raw probabilities (JSON) as the
        reason.
        """
        text, options = self.questions[ask.question_id]
        letters = LETTERS[:len(options)]
        ask_probabilities = getattr(caller, "option_probabilities", None)
        if ask_probabilities is None or len(options) > len(LETTERS):
            raise UsageError(f"--elicit {LOGPROBS}: this model client cannot read token "
                             "log-probabilities (not with --batch or a remote executor; at "
                             f"most {len(LETTERS)} options)")
        messages = logprobs_messages(text, options, letters=letters,
                                     group=self.groups.get(ask.respondent, ask.respondent))
        result = await ask_probabilities(messages, letters,
                                         purpose=f"{CALIBRATE_PURPOSE}-{LOGPROBS}")
        if result.value is None:
            return Answer(ask, None, None, result)
        shares = {o: float(result.value.probabilities.get(letter, 0.0))
                  for letter, o in zip(letters, options, strict=True)}
        return Answer(ask, max(shares, key=lambda o: shares[o]), json.dumps(shares), result)

    async def _one(self, ask: Ask, caller: StructuredCaller) -> Answer:
        if ask.steering == LOGPROBS:
            return await self._logprobs(ask, caller)
        if is_group_method(ask.steering) or archetype_k(ask.steering) is not None:
            return await self._stated(ask, caller)
        text, options = self.questions[ask.question_id]
        if ask.persona_id is None:
            messages = calibration_messages(text, options, steering=NO_PERSONA,
                                            respondent=_respondent_number(ask.respondent))
        else:
            persona, attributes = self.personas[ask.persona_id]
            messages = calibration_messages(text, options, steering=ask.steering, text=persona,
                                            attributes=attributes)
        result = await caller.structured(survey_schema("choice", options), messages,
                                         purpose=CALIBRATE_PURPOSE, persona_id=ask.persona_id,
                                         max_tokens=SURVEY_MAX_TOKENS)
        if result.value is None:
            return Answer(ask, None, None, result)
        value = result.value.model_dump()
        return Answer(ask, str(value["answer"]), str(value.get("reason") or "") or None, result)

    async def run_batch(self, batch: Sequence[Ask], caller: StructuredCaller) -> list[Answer]:
        """Every ask of a batch concurrently (the client bounds the calls in flight)."""
        return list(await asyncio.gather(*(self._one(ask, caller) for ask in batch)))

    # ShardCodec: how an answer travels from a Ray worker
    def key(self, ask: Ask) -> str:
        return "\x1f".join((ask.question_id, ask.steering, ask.respondent))

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
    batches: str | None = None  # --batch: what its provider batches did in this run
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


def _state(ctx: JobContext[CalibrateConfig]) -> CalibrationState:
    state: CalibrationState = ctx.state
    return state


def offered(question: Question, offer_refusal: bool) -> tuple[str, ...]:
    """The options a question's enum holds: the substantive ones, and its refusals if offered."""
    return question.options if offer_refusal else question.substantive


class CalibrationSpec(ShippedSpec[CalibrateConfig, Sequence[Ask], list[Answer], CalibrationSummary],
                      kind="calibration"):
    """The job spec behind personahub calibrate."""

    config_type = CalibrateConfig
    independent_batches = True

    def prepare(self, ctx: JobContext[CalibrateConfig]) -> None:
        """The questions, human answers and panels: read and drawn, or the job's on resume."""
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
        all_groups = [(qid, key) for qid in selected.questions
                      for key in (g.key for g in selected.groups[qid])]
        names = list(dict.fromkeys(f"{a}={g}" for _, (a, g) in all_groups))
        sizes = {f"{a}={g}": len(panels.get((a, g), [])) for _, (a, g) in all_groups}
        for method in config.elicit:  # K too large for the questions: one line, nothing asked
            held_out(method, selected.questions, config.seed)
        summary = CalibrationSummary(
            job_id=ctx.job_id, survey=config.survey, population=config.population,
            steering=config.steering, elicit=config.elicit, archetypes=config.archetypes,
            questions=len(selected.questions),
            left_out={why: tuple(ids) for why, ids in (ctx.stored.get(LEFT_OUT) or {}).items()},
            groups=len(names),
            empty_groups=[n for n in names if sizes[n] == 0],
            small_groups=[n for n in names if 0 < sizes[n] < config.n], personas=len(everyone))
        if not ctx.resumed:
            summary.weighting = survey.weighting
        personas = profiles(everyone)
        groupings = {k: grouping(personas, k, config.seed) for k in config.archetypes}
        ctx.state = CalibrationState(selected, panels, personas, summary, archetypes=groupings)
        if not ctx.resumed:  # a plan too large is refused before anything is recorded
            check_plan(self._planned(ctx), "calibrate", "--n, --no-persona-n, --question, "
                                                        "--attribute or --limit")

    def start(self, ctx: JobContext[CalibrateConfig]) -> BatchOutcome:
        """The job's row, its questions, the human answers it scores against, its panels."""
        state, config = _state(ctx), ctx.config
        job = {"job_id": ctx.job_id, "survey": config.survey,
               "survey_sha1": ctx.stored["survey_sha1"], "population": config.population,
               "n": config.n, "no_persona_n": config.asks_without_persona,
               "steering": json.dumps(list(config.steering)),
               "offer_refusal": config.offer_refusal, "llm": ctx.caller.label}
        return BatchOutcome(rows={"calibration_jobs": [job],
                                  "calibration_questions": question_rows(ctx.job_id, state.selected),
                                  "calibration_human": human_rows(ctx.job_id, state.selected),
                                  "calibration_panels": group_rows(ctx.job_id, state.panels)},
                            calls=self._probe(ctx))

    def _probe(self, ctx: JobContext[CalibrateConfig]) -> list[StructuredResult[Any]]:
        """With --elicit logprobs, make one ask first, so a server without log-probabilities stops the
        job before anything is written.
        """
        if LOGPROBS not in ctx.config.elicit or ctx.caller.is_offline:
            return []
        asks = [a for a in self._asks(ctx) if a.steering == LOGPROBS]
        if not asks:
            return []
        answer = ctx.run(self.plain_asker(ctx).run_batch(asks[:1], ctx.caller))[0]
        return [answer.call]

    def _asks(self, ctx: JobContext[CalibrateConfig]) -> list[Ask]:
        """Every ask in order: per question, each steering's panel personas once, then no-persona asks.
        """
        state, config = _state(ctx), ctx.config
        group_methods = [m for m in config.elicit if is_group_method(m)]
        shown = {m: set(held_out(m, state.selected.questions, config.seed)) for m in group_methods}
        asks: list[Ask] = []
        for qid in state.selected.questions:
            asked = [g for g in state.selected.groups[qid] if state.panels.get(g.key)]
            people = list(dict.fromkeys(pid for group in asked for pid in state.panels[group.key]))
            if SAMPLE in config.elicit:
                for steering in config.steering:
                    asks += [Ask(qid, steering, pid, pid) for pid in people]
            for method in group_methods:
                if qid not in shown[method] or asks_held_out(method):
                    asks += [Ask(qid, method, group_key(*g.key), None) for g in asked]
            for k, (_, grouped) in state.archetypes.items():
                asks += [Ask(qid, archetype_method(k), archetype_respondent(k, a), None)
                         for a in range(len(grouped))]
            asks += [Ask(qid, NO_PERSONA, f"#{k}", None)
                     for k in range(config.asks_without_persona)]
        return asks

    def _planned(self, ctx: JobContext[CalibrateConfig]) -> int:
        """How many asks _asks returns, counted without making them (a plan too large to hold is
        refused before it is made)."""
        state, config = _state(ctx), ctx.config
        group_methods = [m for m in config.elicit if is_group_method(m)]
        shown = {m: set(held_out(m, state.selected.questions, config.seed)) for m in group_methods}
        per_archetype = sum(len(grouped) for _, grouped in state.archetypes.values())
        total = 0
        for qid in state.selected.questions:
            asked = [g for g in state.selected.groups[qid] if state.panels.get(g.key)]
            if SAMPLE in config.elicit:
                people = {pid for group in asked for pid in state.panels[group.key]}
                total += len(people) * len(config.steering)
            total += len(asked) * sum(qid not in shown[m] or asks_held_out(m)
                                      for m in group_methods)
            total += per_archetype + config.asks_without_persona
        return total

    def _count_calls(self, ctx: JobContext[CalibrateConfig], asks: Sequence[Ask]) -> None:
        """Calls per method and the question x group pairs each scores, for the summary."""
        state, config = _state(ctx), ctx.config
        methods = {s: SAMPLE for s in config.steering} | {NO_PERSONA: "no_persona"}
        summary = state.summary
        summary.calls = asks_per_method(asks, methods)
        pairs = [(qid, g.key) for qid in state.selected.questions
                 for g in state.selected.groups[qid] if state.panels.get(g.key)]
        summary.cells = {}
        for method in config.elicit:
            shown = set(held_out(method, state.selected.questions, config.seed))
            summary.cells[method] = sum(1 for qid, _ in pairs if qid not in shown)
        for k in config.archetypes:
            summary.cells[archetype_method(k)] = len(pairs)

    def plan(self, ctx: JobContext[CalibrateConfig]) -> Iterator[Sequence[Ask]]:
        """The asks not yet answered, in batches."""
        asks = self._asks(ctx)
        batches = remaining(ctx, asks, answered_keys(ctx.con, ctx.job_id),
                            lambda a: (a.question_id, a.steering, a.respondent),
                            ctx.config.batch_size)
        summary = _state(ctx).summary
        summary.asks, summary.skipped_done = len(asks), ctx.done_before
        self._count_calls(ctx, asks)
        return batches


    def plain_asker(self, ctx: JobContext[CalibrateConfig]) -> CalibrationAsker:
        """The job's asker, calling the model directly."""
        state = _state(ctx)
        config, survey = ctx.config, state.selected.survey
        questions = {qid: (q.text, offered(q, config.offer_refusal))
                     for qid, q in survey.questions.items()}
        groups = {group_key(*g.key): attribute_lines(dict(g.conditions)) or g.name
                  for g in state.selected.all_groups()}
        for k, (ids, grouped) in state.archetypes.items():
            groups |= {archetype_respondent(k, a): describe(state.personas, ids, grouped, a)
                       for a in range(len(grouped))}
        shots: dict[str, str] = {}
        for method in config.elicit:
            shown = held_out(method, state.selected.questions, config.seed)
            if shown and not asks_held_out(method):
                shots |= {f"{method}\x1f{group_key(*g.key)}": shots_text(survey, shown,
                                                                      g.attribute, g.labels)
                          for g in state.selected.all_groups()}
        panels = ({group_key(*g.key): "\n".join(f"- {state.personas[p][0]}"
                                                 for p in state.panels.get(g.key, [])[:PANEL_SHOWN])
                   for g in state.selected.all_groups()}
                  if DISTRIBUTION_PANEL in config.elicit else {})
        return CalibrationAsker(questions, state.personas, groups, shots, panels)

    def commit(self, ctx: JobContext[CalibrateConfig], batch: Sequence[Ask],
               result: list[Answer]) -> BatchOutcome:
        """The batch's answers; one error per ask without one (for the failure policy)."""
        survey = _state(ctx).selected.survey

        def row(answer: Answer) -> dict[str, Any] | None:
            if answer.option is None:
                return None
            ask = answer.ask
            return {"job_id": ctx.job_id, "question_id": ask.question_id,
                    "steering": ask.steering, "respondent": ask.respondent,
                    "persona_id": ask.persona_id, "answer": answer.option,
                    "refused": answer.option in survey.questions[ask.question_id].refusals,
                    "reason": answer.reason, "model": ctx.caller.label}

        return answered(batch, result, row, lambda a: call_error(a.call),
                        table="calibration_answers")

    def summary(self, ctx: JobContext[CalibrateConfig]) -> CalibrationSummary:
        """Score the answers (replacing the job's earlier scores) and sum the job up."""
        from personahub.analysis.calibration_verdict import intervals, verdict
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
        methods = {s: SAMPLE for s in ctx.config.steering} | {NO_PERSONA: "no_persona"}
        summary.answered_calls = {}
        by_steering = answers_by_steering(ctx.con, ctx.job_id)
        for steering, count in by_steering.items():
            method = methods.get(steering, steering)
            summary.answered_calls[method] = summary.answered_calls.get(method, 0) + count
        scored = score_job(ctx.con, ctx.job_id)
        summary.per_attribute = per_attribute(scored.summary)
        summary.overall_per_group = per_attribute(scored.summary, overall="per-group").head(1)
        summary.dispersion = dispersion_table(scored.summary)
        summary.sd_per_question = sd_by_question(scored.scores)
        summary.temperatures = fitted_temperatures(scored.scores)
        summary.panel_sizes = panel_sizes_of(scored.scores)
        summary.question_counts = questions_per_row(scored.scores)
        summary.verdict = verdict(scored.scores, ctx.config.seed)
        summary.intervals = intervals(scored.scores, ctx.config.seed)
        summary.panel_intervals = panel_intervals_of(
            scored.scores, _state(ctx).selected.survey, ctx.config.seed)
        summary.logprobs_temperature = logprobs_temperature(ctx.con, ctx.job_id)
        if LOGPROBS in ctx.config.elicit:
            summary.logprobs_fit_questions = len(held_out(
                LOGPROBS, _state(ctx).selected.questions, ctx.config.seed))
        if ctx.config.archetypes:
            summary.price = price_table(scored.scores, _state(ctx).selected.survey.questions,
                                        by_steering)
        summary.batches = self.batches_line(ctx)
        return summary

    def stop_note(self, ctx: JobContext[CalibrateConfig]) -> str:
        answered, _ = answer_totals(ctx.con, ctx.job_id)
        return f" ({answered} of {_state(ctx).summary.asks} answers written)"

    def report(self, summary: CalibrationSummary, db: Path) -> list[str]:
        """What the job did and its per-attribute representativeness, as console lines."""
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
        lines += elicit_lines(summary)
        lines += table_lines(summary.per_attribute)
        lines += overall_lines(summary.per_attribute, summary.overall_per_group)
        lines += question_count_lines(summary.question_counts)
        lines += dispersion_lines(summary.dispersion, summary.sd_per_question)
        lines += temperature_lines(summary.temperatures)
        lines += size_lines(summary.panel_sizes)
        lines += interval_lines(summary.panel_intervals, summary.intervals)
        lines += price_lines(summary.price)
        if summary.verdict:
            lines += [f"verdict: {summary.verdict[0]}", *(f"  {v}" for v in summary.verdict[1:])]
        if summary.batches:
            lines.append(summary.batches)
        if summary.failed:
            lines.append(f"resume to ask the failed ones again: {self.resume_hint(summary.job_id, db)}")
        lines.append(f"  personahub report --calibration {summary.job_id} --db {db} --out report/")
        return lines



CALIBRATION = register(CalibrationSpec())
