"""The quality gate: persona rules, per-kind validators, and rejected rows kept out of the hub."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field
from typer.testing import CliRunner

from personahub.agents.prompts.agent import agent_messages
from personahub.analysis.views import install_views
from personahub.api import run_simulation, run_synthesis
from personahub.cli.app import app, print_summary
from personahub.core.store import connect
from personahub.models.client import LLMClient, LLMSettings, StructuredResult
from personahub.personas import quality
from personahub.personas.expand import EXPAND_MAX_TOKENS, related_personas_schema
from personahub.personas.importers import iter_personas
from personahub.personas.quality import (
    MAX_CHARS,
    MAX_DIGIT_SHARE,
    MAX_NAME_TOKENS,
    MAX_WORDS,
    MIN_CHARS,
    MIN_LETTER_SHARE,
    MIN_SCRIPT_SHARE,
    MIN_WORDS,
    clean_persona_text,
    echo_issue,
    finish_persona,
    gate_answer,
    gate_persona,
    max_length,
    rejection_line,
    screen_persona,
)
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.personas.text_to_persona import text_personas_schema
from personahub.pipelines.prompts.personas import expand_messages, prompt_text, text_to_persona_messages
from personahub.pipelines.prompts.synthesis import synthesis_messages
from personahub.pipelines.run import RunConfig
from personahub.pipelines.synthesize import SynthConfig
from personahub.sim.scenario import load_scenario
from personahub.tasks import (
    addressed_kinds,
    emission_kinds,
    emission_task,
    synthesis_names,
    synthesis_task,
    tasks,
)
from personahub.tasks.base import Content
from personahub.tasks.math_problem import MathProblem
from personahub.tasks.max_tokens import kind_max_tokens
from personahub.tasks.synthesis_schemas import SYNTH_SCHEMAS, Solution, content_of, schema_for
from personahub.tasks.tool_spec import ToolSpec
from personahub.tasks.validators import (
    MIN_BODY_CHARS,
    MIN_BODY_WORDS,
    MIN_INSTRUCTION_CHARS,
    MIN_INSTRUCTION_WORDS,
    MIN_PROBLEM_WORDS,
    MIN_TITLE_CHARS,
    MIN_TURNS,
    args_issue,
)
from tests.conftest import persona_texts
from tests.expansions import expand_hub
from tests.fakes import Answer, Call, Edit, FakeClient, people_answers
from tests.text_jobs import text_job

EMISSION_SCHEMAS = {kind: emission_task(kind).schema for kind in emission_kinds()}
ADDRESSED_KINDS = addressed_kinds()

ROOT = Path(__file__).resolve().parents[2]
SEED_FILE = ROOT / "personas" / "data" / "seed_personas.jsonl"

# --------------------------------------------------------------------------- persona rules

PERSONA_CASES = [
    # the field report (SmolLM2-135M) and other junk a small model returns
    ("1.5 years old", "age_only"),
    ("Lilith Maddox", "bare_name"),
    ("1234567890 Patients", "mostly_digits"),
    ("Patients", "too_short"),
    ("Dr. Smith", "bare_name"),
    ("Prof. Maria de la Cruz", "bare_name"),
    ("Chapter 3", "too_short"),
    ("42", "mostly_digits"),
    ("The", "too_short"),
    ("N/A", "placeholder"),
    ("someone", "placeholder"),
    ("I am a", "too_short"),
    ("Sure! Here is a persona:", "meta"),
    ("Here's a persona for you: a nurse who sings", "meta"),
    ("As an AI language model, I cannot describe a person.", "meta"),
    ('{"persona": "A nurse who sings"}', "meta"),
    ("A 45-year-old.", "age_only"),
    ("aged 45 years", "age_only"),
    ("The history of the Roman Empire", "no_role"),
    ("Sunny weather with a chance of rain.", "no_role"),
    ("An overview of tax law for small businesses", "no_role"),
    ("A list of the best restaurants in Paris", "no_role"),
    ("A pediatric nurse in Lagos who works at the", "fragment"),
    ("A retired ferry pilot who loves:", "fragment"),
    ("#### ---- !!!! ???? nurse", "few_letters"),
    ("A night nurse\x00 from Lisbon who sings", "control_chars"),
    ("A night nurse \x1b[31mfrom Lisbon who sings", "control_chars"),
    ("A nurse who " + "very " * MAX_WORDS + "much likes tides", "too_long"),
    # Persona Hub style personas pass
    ("A pediatric nurse in Lagos who volunteers at a free clinic on weekends.", None),
    ("a retired ferry pilot fascinated by tides", None),
    ("A local historian", None),
    ("An aspiring game developer who streams speedruns", None),
    ("A hardcore Bollywood movie fan", None),
    ("A Political Analyst specialized in El Salvador's political landscape.", None),
    ("A stay-at-home parent of three homeschooling twins", None),
    ("A 34-year-old from Leeds who runs marathons", None),
    ("She runs a bakery in Lyon and dreams of opening a second one.", None),
    ("A computer-science undergraduate in Seoul preparing her first pull request.", None),
    ("A lock-keeper in his late seventies who reads the river level every morning.", None),
    ("A young Nigerian learning to code", None),
    ("A middle-aged Texan trying to start a podcast", None),
    ("A gamer from Manila always logged on", None),
    ("一位在东京工作的护士，喜欢园艺和摄影。", None),  # no language asked: the role rule is English-only
]


def check_emission(kind: str, content: Content) -> quality.QualityIssue | None:
    """The first problem of a simulation emission of ``kind``."""
    return emission_task(kind).check(content)


def check_item(task: str, content: Content) -> quality.QualityIssue | None:
    """The first problem of a synthesis item of ``task``."""
    return synthesis_task(task).check(content)


@pytest.mark.parametrize(("text", "code"), PERSONA_CASES)
def test_persona_rules(text: str, code: str | None) -> None:
    issue = screen_persona(text)
    assert (issue.code if issue else None) == code
    if issue:
        assert issue.message and str(issue).startswith(code + ": ")


@pytest.mark.parametrize(("text", "language", "code"), [
    ("一位在东京工作的护士，喜欢园艺和摄影。", "en", "wrong_language"),
    ("一位在东京工作的护士，喜欢园艺和摄影。", "English", "wrong_language"),
    ("一位在东京工作的护士，喜欢园艺和摄影。", "zh", None),
    ("A nurse in Lyon who loves gardening.", "zh", "wrong_language"),
    ("A nurse in Lyon who loves gardening.", "en-GB", None),
    ("Une infirmière à Lyon qui adore le jardinage.", "fr", None),  # role rule skipped: not English
    ("Une infirmière à Lyon qui adore le jardinage.", "en", "no_role"),
    ("Медсестра из Казани, которая любит шахматы.", "ru", None),
    ("Медсестра из Казани, которая любит шахматы.", "de", "wrong_language"),
])
def test_language_rule(text: str, language: str, code: str | None) -> None:
    issue = screen_persona(text, language=language)
    assert (issue.code if issue else None) == code


def test_unknown_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="language 'klingon': unknown"):
        screen_persona("A nurse who sings", language="klingon")


@pytest.mark.parametrize(("raw", "cleaned"), [
    ('  "A nurse who sings at weddings."  ', "A nurse who sings at weddings."),
    ("Persona: A nurse who sings", "A nurse who sings"),
    ("**Persona 2:** 'A nurse who sings'", "A nurse who sings"),
    ("“A nurse who sings”", "A nurse who sings"),
    ('"Bob" is a nurse who says "hi"', '"Bob" is a nurse who says "hi"'),  # not one quoted span
    ("A persona: nurse who sings", "A persona: nurse who sings"),  # only a leading label
])
def test_cleaning_is_only_the_obviously_safe_part(raw: str, cleaned: str) -> None:
    assert clean_persona_text(raw) == cleaned


def test_gate_cleans_before_checking() -> None:
    assert gate_persona('Persona: "Lilith Maddox"') == (
        "Lilith Maddox", screen_persona("Lilith Maddox"))
    assert gate_persona("  'a retired ferry pilot fascinated by tides' ") == (
        "a retired ferry pilot fascinated by tides", None)


def _code(text: str, **kwargs: Any) -> str | None:
    issue = screen_persona(text, **kwargs)
    return issue.code if issue else None


def test_length_thresholds_at_their_edges() -> None:
    base = "A nurse who "
    assert _code(base + "y" * (MIN_CHARS - len(base))) is None
    assert _code(base + "y" * (MIN_CHARS - 1 - len(base))) == "too_short"
    assert _code(base + "y" * (MAX_CHARS - len(base))) is None
    assert _code(base + "y" * (MAX_CHARS + 1 - len(base))) == "too_long"
    assert _code(" ".join(["midwife"] * MIN_WORDS)) is None
    assert len(" ".join(["midwife"] * (MIN_WORDS - 1))) >= MIN_CHARS
    assert _code(" ".join(["midwife"] * (MIN_WORDS - 1))) == "too_short"
    assert _code("A nurse who" + " hums" * (MAX_WORDS - 3)) is None
    assert _code("A nurse who" + " hums" * (MAX_WORDS - 2)) == "too_long"
    name = ["Prof.", "Maria", "de", "la", "Cruz", "Lopez", "Vidal"]
    assert _code(" ".join(name[:MAX_NAME_TOKENS])) == "bare_name"
    assert _code(" ".join(name[:MAX_NAME_TOKENS + 1])) == "no_role"  # longer: not taken for a name


def test_share_thresholds_at_their_edges() -> None:
    base = "A nurse who knits hats "
    letters = sum(c.isalpha() for c in base)
    # digits: the largest count within MAX_DIGIT_SHARE passes, one more fails
    digits = math.floor(MAX_DIGIT_SHARE * letters / (1 - MAX_DIGIT_SHARE))
    assert _code(base + "7" * digits) is None
    assert _code(base + "7" * (digits + 1)) == "mostly_digits"
    # letters among the non-space characters: the most punctuation allowed, then one more
    marks = math.floor(letters / MIN_LETTER_SHARE - letters)
    assert _code(base + "!" * marks) is None
    assert _code(base + "!" * (marks + 1)) == "few_letters"
    # script share: Latin letters allowed into a Chinese persona before it stops being Chinese
    han = "一位在东京工作的护士喜欢园艺和摄影"
    latin = math.floor(len(han) * (1 - MIN_SCRIPT_SHARE) / MIN_SCRIPT_SHARE)
    assert _code(han + " " + "x" * latin, language="zh") is None
    assert _code(han + " " + "x" * (latin + 1), language="zh") == "wrong_language"


def _offline_personas() -> list[str]:
    """Personas the offline engine writes for expansion and text-to-persona prompts."""
    client = LLMClient(LLMSettings(seed=7))
    parents = [p.text for p in iter_personas(SEED_FILE)][:40] + persona_texts(20)

    async def ask() -> list[str]:
        texts = []
        for parent in parents:
            answer = await client.structured(related_personas_schema(3), expand_messages(parent, 3),
                                             purpose="expand",
                                             max_tokens=EXPAND_MAX_TOKENS)
            texts += [p.persona for p in answer.value.people]
            for relation in ("read", "dislike"):
                answer = await client.structured(text_personas_schema(2),
                                                 text_to_persona_messages(parent, relation, 2),
                                                 purpose="t2p")
                texts += [p.persona for p in answer.value.personas]
        return texts

    return asyncio.run(ask())


def test_shipped_test_and_offline_personas_all_pass() -> None:
    shipped = [p.text for path in sorted((ROOT / "personas" / "data").glob("*.jsonl"))
               for p in iter_personas(path)]
    assert len(shipped) >= 150
    generated = _offline_personas()
    assert len(generated) >= 60 * 5  # 3 related people, then 1 or 2 per relation
    for text in shipped + persona_texts(600) + generated:
        assert screen_persona(text, language="en") is None, text


# --------------------------------------------------------------------------- kind validators

GOOD_TOOL = {"name": "Tide Planner", "description": "Finds the next high tide for a harbour.",
             "function_name": "get_next_tide", "input_args": "harbour: str, after: datetime",
             "return": "the time of the next high tide", "depend": "a tide API"}


def tool(**changes: Any) -> dict[str, Any]:
    return {**GOOD_TOOL, **changes}


EMISSION_CASES = [
    ("instruction", {"instruction": "Plan my week of ferry crossings, please."}, None),
    ("instruction", {"instruction": "Help me now"}, "too_short"),
    ("instruction", {"instruction": "?? ## !! ** ## ?? !!"}, "few_letters"),
    ("npc_dialogue", {"line": "Morning! Ferry's late again.", "tone": "warm"}, None),
    ("npc_dialogue", {"line": " ... ", "tone": "warm"}, "empty_line"),
    ("tool_spec", GOOD_TOOL, None),
    ("tool_spec", tool(input_args="harbour, after"), None),  # names only, as the schema asks
    ("tool_spec", tool(input_args=""), None),  # no arguments
    ("tool_spec", tool(input_args='{"harbour": "str", "after": "datetime"}'), None),
    ("tool_spec", tool(input_args='[{"name": "harbour", "type": "str"}]'), None),
    ("tool_spec", tool(input_args="items: dict[str, int], limit: int = 10"), None),
    ("tool_spec", tool(function_name="1 bad name"), "bad_identifier"),
    ("tool_spec", tool(function_name="get-tide"), "bad_identifier"),
    ("tool_spec", tool(function_name="class"), "keyword_identifier"),
    ("tool_spec", tool(name="  "), "no_name"),
    ("tool_spec", tool(description="..."), "no_description"),
    ("tool_spec", tool(input_args="the harbour name, a date"), "bad_args"),
    ("tool_spec", tool(input_args="harbour: str, 2nd: int"), "bad_args"),
    ("tool_spec", tool(input_args="lambda: str"), "bad_args"),
    ("tool_spec", tool(input_args='{"harbour": "str", "from": "date"}'), "bad_args"),
    ("tool_spec", tool(input_args="{not json"), "bad_args"),
    ("conversation", {"turns": [{"line": "Seen the ferry?"}, {"line": "Not yet."}]}, None),
    ("conversation", {"turns": [{"line": "Seen the ferry?"}, {"line": "  "}]}, "too_few_turns"),
    ("math_problem", {"problem": "A ferry carries 40 cars per trip and makes 9 trips a day. "
                                 "How many cars does it carry in a week?"}, None),
    ("math_problem", {"problem": "Find the number of ways to seat the ferry crew around a "
                                 "round table."}, None),
    ("math_problem", {"problem": "A ferry carries 40 cars per trip and makes 9 trips a day."},
     "not_a_question"),
    ("math_problem", {"problem": "Why does the ferry run late on windy mornings here?"},
     "no_quantity"),
    ("math_problem", {"problem": "How many cars fit?"}, "too_short"),
    ("math_problem", {"problem": "1008-Baker-1,Bakery,Bakers,Sumer,Camel,Camel"}, "too_short"),
    ("reasoning_problem", {"problem": "Ana, Ben and Caro each keep one boat. Ana's is not red. "
                                      "Who keeps the red boat?"}, None),
    ("reasoning_problem", {"problem": "Ana, Ben and Caro each keep one boat by the river."},
     "not_a_question"),
    ("knowledge_text", {"title": "How tides work",
                        "text": "Tides rise and fall twice a day because the moon pulls the "
                                "oceans towards it."}, None),
    ("knowledge_text", {"title": "??", "text": "Tides rise and fall twice a day because the moon "
                                               "pulls the oceans."}, "no_title"),
    ("knowledge_text", {"title": "How tides work", "text": "The moon does it."}, "too_short"),
]


@pytest.mark.parametrize(("kind", "content", "code"), EMISSION_CASES)
def test_emission_validators(kind: str, content: dict[str, Any], code: str | None) -> None:
    issue = check_emission(kind, content)
    assert (issue.code if issue else None) == code


TASK_CASES = [
    ("instruction", {"instruction": "Plan my week of ferry crossings, please."}, None),
    ("instruction", {"instruction": "ok then"}, "too_short"),
    ("multi_turn", {"user_turns": ["When is the next ferry?", "And the one after?"]}, None),
    ("multi_turn", {"user_turns": ["When is the next ferry?", " "]}, "too_few_turns"),
    ("multi_turn", {"turns": [{"user": "Next ferry?", "assistant": "At noon."},
                              {"user": "After that?", "assistant": "At two."}]}, None),
    ("multi_turn", {"turns": [{"user": "Next ferry?", "assistant": "At noon."},
                              {"user": "After that?", "assistant": "--"}]}, "empty_turn"),
    ("npc", {"name": "Mira", "role": "ferrywoman", "description": "Runs the crossing.",
             "line": "Two coppers, and mind the rope."}, None),
    ("npc", {"name": " ", "role": "ferrywoman", "description": "Runs the crossing.",
             "line": "Two coppers."}, "no_name"),
    ("npc", {"name": "Mira", "role": "ferrywoman", "description": "Runs the crossing.",
             "line": "..."}, "empty_line"),
    ("tool_spec", GOOD_TOOL, None),
    ("tool_spec", tool(function_name="import"), "keyword_identifier"),
    ("math_problem", {"problem": "A ferry carries 40 cars per trip and makes 9 trips a day. "
                                 "How many cars does it carry in a week?"}, None),
    ("reasoning_problem", {"problem": "Three ferries leave at different hours; deduce which "
                                      "one arrives first from the clues below."}, None),
    ("knowledge_text", {"title": "How tides work", "text": "It is the moon."}, "too_short"),
]


@pytest.mark.parametrize(("task", "content", "code"), TASK_CASES)
def test_task_validators(task: str, content: dict[str, Any], code: str | None) -> None:
    issue = check_item(task, content)
    assert (issue.code if issue else None) == code


def test_a_too_short_problem_says_which_limit_it_missed() -> None:
    """A problem has a word minimum and no character minimum: the message names only the
    limit that applies (it once read "under 0 characters or 8 words")."""
    issue = check_item("math_problem", {"problem": "1008-Baker-1,Bakery,Bakers,Camel"})
    assert issue is not None and issue.message == "the problem is under 8 words"
    issue = check_item("instruction", {"instruction": "ok then"})
    assert issue is not None and issue.message == "the instruction is under 15 characters or 3 words"


def test_every_kind_and_task_has_a_validator() -> None:
    assert set(EMISSION_SCHEMAS) <= set(emission_kinds())
    assert set(SYNTH_SCHEMAS) <= set(synthesis_names())
    assert all(callable(task.check) for task in tasks())
    assert check_emission("tool_spec", tool(function_name="import")).code == "keyword_identifier"


def _words(n: int) -> str:
    return " ".join(["ferries"] * n)


def test_validator_thresholds_at_their_edges() -> None:
    def code(kind: str, content: dict[str, Any]) -> str | None:
        issue = check_emission(kind, content)
        return issue.code if issue else None

    short = "a" * (MIN_INSTRUCTION_CHARS - 2 * (MIN_INSTRUCTION_WORDS - 1))
    instruction = " ".join(["a"] * (MIN_INSTRUCTION_WORDS - 1) + [short])
    assert len(instruction) == MIN_INSTRUCTION_CHARS
    assert code("instruction", {"instruction": instruction}) is None
    assert code("instruction", {"instruction": instruction[:-1]}) == "too_short"
    assert code("instruction", {"instruction": "a" * 40}) == "too_short"  # one word
    question = "How many? "
    assert code("math_problem", {"problem": _words(MIN_PROBLEM_WORDS - 2) + " " + question}) is None
    assert code("math_problem", {"problem": _words(MIN_PROBLEM_WORDS - 3) + " " + question}) \
        == "too_short"
    body = _words(MIN_BODY_WORDS)
    assert len(body) >= MIN_BODY_CHARS
    assert code("knowledge_text", {"title": "Tides", "text": body}) is None
    assert code("knowledge_text", {"title": "Tides", "text": _words(MIN_BODY_WORDS - 1)}) \
        == "too_short"
    tail = "a" * (MIN_BODY_CHARS - 2 * (MIN_BODY_WORDS - 1))
    short_words = " ".join(["a"] * (MIN_BODY_WORDS - 1) + [tail])
    assert len(short_words) == MIN_BODY_CHARS
    assert code("knowledge_text", {"title": "Tides", "text": short_words}) is None
    assert code("knowledge_text", {"title": "Tides", "text": short_words[:-1]}) == "too_short"
    title = "T" * MIN_TITLE_CHARS
    assert code("knowledge_text", {"title": title, "text": body}) is None
    assert code("knowledge_text", {"title": title[:-1], "text": body}) == "no_title"
    turns = [{"line": f"line {i}"} for i in range(MIN_TURNS)]
    assert code("conversation", {"turns": turns}) is None
    assert code("conversation", {"turns": turns[:-1]}) == "too_few_turns"


def test_tool_specs_are_read_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for args in (code, f"x = {code}", f'{{"x": "{code}"}}', f"[{code}]"):
        args_issue(args)
        check_emission("tool_spec", tool(input_args=args, function_name=code, name=code))
    assert not marker.exists()


def test_offline_emissions_and_items_all_pass() -> None:
    client = LLMClient(LLMSettings(seed=3))
    people = [p.text for p in iter_personas(SEED_FILE)][::10] + persona_texts(5)
    world = (ROOT / "scenarios" / "worlds" / "fantasy_village.md").read_text()[:1200]

    async def ask() -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for i, persona in enumerate(people):
            for kind, schema in EMISSION_SCHEMAS.items():
                messages = agent_messages(persona=persona, kind=kind, world=world if i % 2 else "",
                                          inbox=[(people[i - 1], "any news about the mill?")],
                                          addressee=people[i - 1] if kind in ADDRESSED_KINDS
                                          else None)
                answer = await client.structured(schema, messages, purpose=kind,
                                                 max_tokens=kind_max_tokens(kind))
                out.append(("emission", kind, answer.value.model_dump(by_alias=True)))
            for task in SYNTH_SCHEMAS:
                for assistant in (False, True) if task == "multi_turn" else (False,):
                    messages = synthesis_messages(task, persona, world=world,
                                                  with_assistant=assistant)
                    answer = await client.structured(schema_for(task, with_assistant=assistant),
                                                     messages, purpose=task,
                                                     max_tokens=kind_max_tokens(task))
                    out.append(("task", task, content_of(answer.value)))
        return out

    answers = asyncio.run(ask())
    assert len(answers) == len(people) * (len(EMISSION_SCHEMAS) + len(SYNTH_SCHEMAS) + 1)
    for where, kind, content in answers:
        check = check_emission if where == "emission" else check_item
        assert check(kind, content) is None, (kind, content)


# --------------------------------------------------------------------------- end to end


JUNK = ["1.5 years old", "Lilith Maddox", "1234567890 Patients"]
GOOD = "A pediatric nurse in Lagos who volunteers at a free clinic on weekends."


def _hub(tmp_path: Path, n: int = 2):
    con = connect(tmp_path / "hub.duckdb")
    people = [Persona(text=t, source="test") for t in persona_texts(n)]
    upsert_personas(con, people)
    return con, people


def test_expansion_keeps_junk_out_of_the_hub(tmp_path: Path) -> None:
    con, people = _hub(tmp_path)
    caller = FakeClient(people_answers([*JUNK, f'Persona: "{GOOD}"']))
    summary = expand_hub(con, caller, start_ids=[people[0].persona_id], hops=1,
                                     fanout=4)
    texts = {t for (t,) in con.execute("select text from personas").fetchall()}
    assert GOOD in texts and not texts & set(JUNK)
    assert summary.new_personas == 1 and summary.edges == 1
    assert summary.rejected == {"age_only": 1, "bare_name": 1, "mostly_digits": 1}
    rows = con.execute("select source, job_id, persona_id, task, reason, payload from rejected "
                       "order by reason").fetchall()
    assert [r[4] for r in rows] == ["age_only", "bare_name", "mostly_digits"]
    assert {r[:4] for r in rows} == {("expand", summary.expansion_id, people[0].persona_id,
                                      "persona")}
    assert json.loads(rows[1][5])["persona"] == "Lilith Maddox"
    assert con.execute("select count(*) from relations where source = 'expand'").fetchall() == [(1,)]
    assert "personas rejected by the quality gate: 3 (top reasons: age_only 1, bare_name 1, " \
        "mostly_digits 1); each one the model answered: its call counts as kept, the gate " \
        "refused what it said" == rejection_line(summary.rejected, "personas")


ECHO_PARENT = "A welder from Osaka aged 24 who loves gardening and astronomy."
ECHO_SHOWN = prompt_text(expand_messages(ECHO_PARENT, 1))


@pytest.mark.parametrize("text, echo", [
    # what SmolLM2-135M answered when asked who is close to a persona
    ("A welder from Osaka", True),
    ("A welder from Osaka who loves gardening and astronomy", True),
    ("a welder, aged 24, from Osaka", True),
    ("A patient of a welder from Osaka", True),  # every word from the prompt: no one new
    ("A retired nurse who lives next door to the welder in Osaka", False),
    # what it copied from the task of an expansion prompt
    ("A patient, colleague, supplier, family member, customer or rival", True),
    ("A scrap-metal dealer in Osaka who buys the welder's offcuts", False),
    ("A night-shift nurse who loves healthcare and helps people with disabilities", False),
])
def test_a_related_persona_that_restates_its_prompt_is_an_echo(text: str, echo: bool) -> None:
    assert (echo_issue(text, ECHO_SHOWN) is not None) is echo
    # only against what the model was shown: the same text alone is a persona
    assert gate_persona(text)[1] is None
    assert (gate_persona(text, shown=ECHO_SHOWN)[1] is not None) is echo


def test_the_seam_check_of_an_expansion_rejects_an_answer_of_echoes_only() -> None:
    schema = related_personas_schema(2)
    echoes = schema.model_validate({"people": [
        {"relation": "friend", "persona": "A welder from Osaka"},
        {"relation": "colleague", "persona": "A welder from Osaka who loves astronomy"}]})
    assert gate_answer("people", None, echoes) is None  # without the parent: two personas
    assert gate_answer("people", None, echoes, shown=ECHO_PARENT).startswith("echo: ")
    mixed = schema.model_validate({"people": [
        {"relation": "friend", "persona": "A welder from Osaka"},
        {"relation": "supplier", "persona": GOOD}]})
    assert gate_answer("people", None, mixed, shown=ECHO_PARENT) is None


def test_expansion_records_an_echo_of_the_parent_as_rejected(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    parent = Persona(text=ECHO_PARENT, source="test")
    upsert_personas(con, [parent])
    caller = FakeClient(people_answers(["A welder from Osaka", GOOD]))
    summary = expand_hub(con, caller, start_ids=[parent.persona_id], hops=1,
                                     fanout=2)
    assert summary.new_personas == 1 and summary.rejected == {"echo": 1}
    texts = {t for (t,) in con.execute("select text from personas").fetchall()}
    assert texts == {ECHO_PARENT, GOOD}


def test_text_to_persona_keeps_junk_out_of_the_hub(tmp_path: Path) -> None:
    con = connect(tmp_path / "hub.duckdb")
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in [
        ("doc-1", "A clinical note on paediatric asthma dosing."),
        ("doc-2", "A review of a jazz trio's debut album.")]))
    caller = FakeClient(people_answers(["Lilith Maddox", GOOD, "1.5 years old"]))
    summary = text_job(con, caller, corpus, id_column="id", relations=("read",), per_text=3)
    assert summary.personas == 2 and summary.new_personas == 1  # the same good text twice
    assert summary.rejected == {"age_only": 2, "bare_name": 2}
    assert con.execute("select text from personas").fetchall() == [(GOOD,)]
    job_id = con.execute("select job_id from text_jobs").fetchall()[0][0]
    rows = con.execute("select source, job_id, task, reason from rejected").fetchall()
    assert Counter(rows) == {("text_to_persona", job_id, "persona", "bare_name"): 2,
                             ("text_to_persona", job_id, "persona", "age_only"): 2}
    done = con.execute("select persona_ids from text_done").fetchall()
    assert [json.loads(d) for (d,) in done] == [[Persona(text=GOOD).persona_id]] * 2
    again = text_job(con, caller, corpus, id_column="id", relations=("read",), per_text=3)
    assert again.asked == 0 and not again.rejected
    assert con.execute("select count(*) from rejected").fetchall() == [(4,)]


def test_from_text_cli_prints_the_rejections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from personahub.runtime import StandardModels  # from-text is a job spec: the kernel's seam

    corpus = tmp_path / "c.jsonl"
    corpus.write_text(json.dumps({"text": "A guide to Portuguese freelance tax."}) + "\n")
    fake = FakeClient(people_answers(["Lilith Maddox", GOOD]))
    monkeypatch.setattr(StandardModels, "build", lambda self, settings: fake)
    monkeypatch.setattr(StandardModels, "check_reachable", lambda self, client: None)
    result = CliRunner().invoke(app, ["personas", "from-text", str(corpus), "--db",
                                      str(tmp_path / "h.duckdb"), "--relations", "read",
                                      "--per-text", "2"])
    assert result.exit_code == 0, result.output
    assert "rejected by the quality gate: 1 (top reasons: bare_name 1)" in result.output
    bad = CliRunner().invoke(app, ["personas", "from-text", str(corpus), "--db",
                                   str(tmp_path / "h.duckdb"), "--language", "klingon"])
    assert bad.exit_code != 0 and "language 'klingon': unknown" in bad.output


def test_expand_cli_prints_the_rejections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from personahub.runtime import StandardModels  # expansion is a job spec: the kernel's seam

    con, _ = _hub(tmp_path)
    con.close()
    fake = FakeClient(people_answers(["Lilith Maddox", GOOD]))
    monkeypatch.setattr(StandardModels, "build", lambda self, settings: fake)
    monkeypatch.setattr(StandardModels, "check_reachable", lambda self, client: None)
    db = str(tmp_path / "hub.duckdb")
    result = CliRunner().invoke(app, ["personas", "expand", "--db", db, "--hops", "1",
                                      "--fanout", "2", "--language", "en"])
    assert result.exit_code == 0, result.output
    assert "rejected by the quality gate: 2 (top reasons: bare_name 2)" in result.output
    bad = CliRunner().invoke(app, ["personas", "expand", "--db", db, "--language", "klingon"])
    assert bad.exit_code != 0 and "language 'klingon': unknown" in bad.output


def breaking_tool_specs(broken: list[str]) -> Edit:
    """Offline answers, except tool specs: a broken identifier, then a Python keyword (each
    broken name is noted in ``broken``)."""

    def edit(call: Call, result: StructuredResult) -> StructuredResult:
        if call.schema is not ToolSpec or result.value is None:
            return result
        data = result.value.model_dump(by_alias=True)
        if len(broken) % 2 == 0:  # what a seam without the schema's identifier check would pass
            value = ToolSpec.model_construct(**{**data, "function_name": "1 bad name"})
        else:  # passes the schema: only the gate knows 'class' cannot be a function name
            value = ToolSpec.model_validate({**data, "function_name": "class"})
        broken.append(value.function_name)
        return StructuredResult(value, result.records, result.raw)

    return edit


def test_simulation_rejects_bad_tool_specs_as_failed_actions(scenario_file, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    # instructions outweigh tool specs: a step where most actions fail would stop the run
    path = scenario_file(n_personas=8, tasks=["tool_spec", "instruction"], steps=2,
                         task_weights=(1.0, 3.0), graph="GraphGrowth(hops=0, acquaintances=2)")
    broken: list[str] = []
    client = FakeClient(edit=breaking_tool_specs(broken), seed=3)
    db = tmp_path / "run.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db), client=client)
    con = connect(db)
    rows = con.execute("select source, run_id, step, persona_id, task, reason, payload "
                       "from rejected order by step, persona_id").fetchall()
    assert len(broken) >= 2 and len(rows) == len(broken)
    assert {r[:2] for r in rows} == {("emission", summary.run_id)}
    assert {r[4] for r in rows} == {"tool_spec"}
    assert Counter(r[5] for r in rows) == {"bad_identifier": (len(broken) + 1) // 2,
                                           "keyword_identifier": len(broken) // 2}
    assert {json.loads(r[6])["function_name"] for r in rows} == {"1 bad name", "class"}
    assert con.execute("select count(*) from emissions where task = 'tool_spec'").fetchall() \
        == [(0,)]
    assert summary.emissions_by_kind == {"instruction": 16 - len(broken)}
    assert summary.failed_actions == len(broken)
    assert con.execute("select sum(n_failed) from steps").fetchall() == [(len(broken),)]
    assert summary.rejected == quality.tally({}, (r[5] for r in rows))
    install_views(con)
    assert con.execute("select source, task, sum(n) from v_rejected group by all").fetchall() == [
        ("emission", "tool_spec", len(broken))]
    print_summary(summary)
    assert "rejected by the quality gate" in capsys.readouterr().out


def math_without_questions(lucky: set[str]) -> Answer:
    """Math problems that ask nothing, except for the ``lucky`` personas (whose get solved)."""

    def answer(call: Call) -> BaseModel:
        if call.schema is Solution:
            return Solution(solution="40 * 9 * 7", answer="2520")
        facts = "A ferry carries 40 cars per trip and makes 9 trips a day, every day."
        if call.persona_id in lucky:
            return MathProblem(problem=facts, question="How many cars does it carry in a week?")
        return MathProblem(problem=facts, question="That is the ferry's whole timetable.")

    return answer


def test_synthesis_keeps_rejected_items_out_of_items_and_exports(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    lucky: set[str] = set()
    client = FakeClient(math_without_questions(lucky), name="no-question", offline=True)
    con = connect(db)
    from personahub.pipelines.synthesis_inputs import seed_hub_if_empty, select_personas

    seed_hub_if_empty(con)
    lucky.add(select_personas(con, None, 1)[0].persona_id)
    con.close()
    summary = run_synthesis(SynthConfig(task="math_problem", n=4, db=str(db), solve=True),
                            client=client)
    assert summary.written == 1 and summary.failed == 3 and summary.solved == 1
    assert summary.rejected == {"not_a_question": 3}
    con = connect(db)
    assert con.execute("select count(*) from synth_items").fetchall() == [(1,)]
    assert con.execute("select status from jobs where kind = 'synthesis'").fetchall() == [("partial",)]
    rows = con.execute("select source, job_id, task, reason from rejected").fetchall()
    assert rows == [("synthesis", summary.job_id, "math_problem", "not_a_question")] * 3
    con.close()
    from personahub.analysis.export import export

    out = tmp_path / "items.jsonl"
    con = connect(db, read_only=True)
    assert export(con, out, "personahub", job=summary.job_id) == 1
    con.close()
    again = run_synthesis(SynthConfig(task="math_problem", db=str(db)), resume=summary.job_id,
                          client=client)
    assert again.skipped_done == 1 and again.rejected == {"not_a_question": 3}
    con = connect(db)
    assert con.execute("select count(*) from rejected").fetchall() == [(3,)]  # rewritten, no twins


# --------------------------------------------------------------------------- finishing a cut persona

@pytest.mark.parametrize(("text", "cut", "expected"), [
    # reached its maxLength mid-word: back to the end of its last whole clause
    ("A night-shift nurse who trains new staff on the ward, and who is currently working o", True,
     "A night-shift nurse who trains new staff on the ward"),
    # reached its maxLength with one clause only: the partial last word goes
    ("A night-shift nurse who trains new staff on the surgical wa", True,
     "A night-shift nurse who trains new staff on the surgical"),
    # a finished sentence that happens to end at the bound is kept whole
    ("A retired ferry pilot who reads tide tables.", True, "A retired ferry pilot who reads tide tables."),
    # not cut, but unfinished: a trailing comma, then dangling words
    ("A retired ferry pilot who lives by the estuary,", False,
     "A retired ferry pilot who lives by the estuary"),
    ("A retired ferry pilot who is the son of a", False, "A retired ferry pilot who is the son"),
    # not cut and finished: unchanged (no final stop needed)
    ("A retired ferry pilot who reads tide tables", False, "A retired ferry pilot who reads tide tables"),
])
def test_finish_persona_cuts_an_unfinished_tail_back_to_its_last_clause(text: str, cut: bool,
                                                                         expected: str) -> None:
    assert finish_persona(text, cut=cut) == expected


def test_gate_keeps_the_finished_part_of_a_persona_that_reached_its_bound() -> None:
    class Bounded(BaseModel):
        persona: str = Field(max_length=60)

    text = "A night-shift nurse who trains new staff, and who is currentl"
    item = Bounded(persona=text[:60])
    assert max_length(item, "persona") == 60
    kept, issue = gate_persona(item.persona, bound=max_length(item, "persona"))
    assert (kept, issue) == ("A night-shift nurse who trains new staff", None)
    # the same text without the bound is not known to be cut: it passes as written
    assert gate_persona(item.persona)[0] == item.persona
    # what is left must still pass every rule: a bare name stays rejected
    assert gate_persona("Maria Lopez, who is currently a", bound=31)[1].code == "bare_name"
    # the seam's check of a whole answer finishes each persona the same way
    class Answer(BaseModel):
        personas: list[Bounded]
    assert gate_answer("personas", None, Answer(personas=[item])) is None
