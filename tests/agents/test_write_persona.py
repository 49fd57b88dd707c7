"""Attribute-to-persona: one structured call, kept to the attributes by the validator."""

from __future__ import annotations

import json
from typing import Any

from personahub.core.contracts import CallRequest, StructuredResult
from personahub.models.seam_validate import Validated
from personahub.pipelines.prompts.population import WrittenPersona, write_persona_messages
from personahub.pipelines.write_persona import persona_check, write_persona
from tests.agents.test_seam_wrappers import FakeEndpoint
from tests.fakes import Call, FakeClient

ATTRS = {"age_group": "65+", "sex": "male", "party": "democrat", "region": "midwest",
         "occupation": "retired machinist", "population": "pop-1", "text_origin": "template"}
GOOD = "A 71-year-old retired machinist in Dayton, Ohio, a lifelong Democrat who restores tractors."
BAD = "A 34-year-old woman in Dayton who restores tractors; she votes Republican every time."


def _answers(*texts: str) -> Any:
    remaining = list(texts)

    def answer(call: Call) -> WrittenPersona:
        assert call.purpose == "write_persona"
        return WrittenPersona(persona=remaining.pop(0) if len(remaining) > 1 else remaining[0])

    return answer


def test_prompt_lists_the_attributes_by_label_and_leaves_bookkeeping_out() -> None:
    body = write_persona_messages(ATTRS)[-1].content
    assert "- Age: 65 or older" in body and "- Sex: male" in body
    assert "- Party: Democrat" in body and "- Region (United States): the Midwest" in body
    assert "- Occupation: retired machinist" in body
    assert "pop-1" not in body and "template" not in body
    assert "## Task" in body


async def test_a_consistent_answer_is_kept() -> None:
    client = FakeClient(answer=_answers(GOOD))
    written = await write_persona(ATTRS, client, persona_id="p1")
    assert written.text == GOOD and written.rejected is None
    assert client.calls == 1


class ValidatingCaller:
    """The seam's validating layer over a scripted endpoint: what a real client does with a
    rejected answer (one fresh sample), with the answers' raw JSON scripted."""

    def __init__(self, *texts: str) -> None:
        self.endpoint = FakeEndpoint([json.dumps({"persona": t}) for t in texts])
        self.layer = Validated(self.endpoint, modes=None)

    async def structured(self, schema: Any, messages: Any, *, purpose: str,
                         persona_id: str | None = None, step: int | None = None,
                         check: Any = None, max_tokens: int | None = None) -> StructuredResult[Any]:
        assert max_tokens == 240  # the job passes its own limit (personahub.tasks.max_tokens)
        return await self.layer.call(CallRequest(schema, messages, purpose, max_tokens, persona_id,
                                                 step, check=check))


async def test_a_contradicting_answer_gets_one_fresh_sample() -> None:
    caller = ValidatingCaller(BAD, GOOD)
    written = await write_persona(ATTRS, caller)  # type: ignore[arg-type]
    assert written.text == GOOD and written.rejected is None
    assert [r.status for r in written.records] == ["invalid", "ok"]
    assert "contradicts its attributes" in (written.records[0].error or "")
    assert [r.sample for r in caller.endpoint.asked] == [0, 1]  # a fresh sample, not a repeat


async def test_contradicting_twice_gives_no_text_and_says_why() -> None:
    written = await write_persona(ATTRS, ValidatingCaller(BAD, BAD))  # type: ignore[arg-type]
    assert written.text is None
    assert written.rejected is not None and "contradicts its attributes" in written.rejected
    assert "age_group is 65+" in written.rejected and "sex is male" in written.rejected
    assert [r.status for r in written.records] == ["invalid", "invalid"]
    scripted = await write_persona(ATTRS, FakeClient(answer=_answers(BAD)))
    assert scripted.text is None and scripted.rejected == written.rejected


def test_persona_check_runs_the_quality_gate_first() -> None:
    frozen = tuple(sorted(ATTRS.items()))
    assert persona_check(frozen, WrittenPersona(persona=GOOD)) is None
    assert persona_check(frozen, WrittenPersona(persona="Persona: N/A " + "x" * 40)) is not None


async def test_the_offline_engine_answers_through_the_whole_seam() -> None:
    client = FakeClient()  # no hook: the offline client answers, the seam validates
    written = await write_persona(ATTRS, client, persona_id="p9")
    assert written.records and written.records[0].purpose == "write_persona"
    assert written.records[0].persona_id == "p9"
    assert (written.text is None) == (written.rejected is not None)
