"""llama.cpp's own server takes the slot a call names (``id_slot``) on /v1/chat/completions.

Marked ``real_model``; skips without llama.cpp's server (a compiled ``llama-server`` or the
``[local]`` extra's xllamacpp) and SmolLM2.
"""

from __future__ import annotations

import asyncio

import pytest

from personahub.agents.prompts.agent import agent_messages
from personahub.models.client import LLMClient, LLMSettings
from personahub.models.llamacpp import local_llama_cpp
from personahub.tasks.instruction import Instruction
from personahub.tasks.max_tokens import kind_max_tokens
from tests.optional import need_llama_cpp

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


def test_llama_cpp_is_found_and_a_family_meets_its_warm_slot() -> None:
    need_llama_cpp()
    with local_llama_cpp(parallel=2, threads=1) as server:
        client = LLMClient(LLMSettings(spec=server.spec, structured="json_schema", timeout_s=300))

        async def calls() -> list[int | None]:
            cached = []
            for persona in ("A ferry pilot who fixes engines.", "A baker who sells bread."):
                result = await client.structured(
                    Instruction, agent_messages(persona=persona, kind="instruction",
                                                world="A river town with a ferry."),
                    purpose="instruction", max_tokens=kind_max_tokens("instruction"))
                cached.append(result.records[0].cached_prompt_tokens)
            return cached

        cached = asyncio.run(calls())
    routers = [getattr(e, "slot_router", None) for e in client.endpoints]
    assert routers and routers[0] is not None and routers[0].slots == 2
    assert cached[1] is not None and cached[1] > 0  # the second call met the first's slot
