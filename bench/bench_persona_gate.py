"""How many of a real small model's text-to-persona and expansion answers the quality gate keeps.

    python bench/bench_persona_gate.py [--seeds 8] [--variant current|persona-key]

Starts llama.cpp's ``llama-server`` (``.ci/build_llama_server.sh``, or ``PERSONAHUB_LLAMA_SERVER``)
with SmolLM2-135M-Instruct on 127.0.0.1, one thread, and asks, per seed, the shipped prompts:
text-to-persona for four short texts (one persona each) and expansion for four personas (two
related people each), with the schemas bounded as the seam bounds them and each purpose's
default ``max_tokens``, at temperature 0.8. Every persona goes through ``gate_persona`` as the
jobs screen it; an answer cut off at ``max_tokens`` counts as ``cut``.

``--variant persona-key`` asks the expansion with the JSON key ``persona`` (what it was before
issue 26's change to ``description``), to compare in the same run of the server.

Prints the counts by outcome per pipeline and ``RESULT t2p kept=K/N cut=C expand kept=K/N cut=C``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Annotated, Any

from pydantic import BaseModel, Field, create_model

TEXTS = (
    "Tide tables for the estuary: high water at 06:12 and 18:40; the ferry runs only within two "
    "hours of high water during spring tides.",
    "Our bakery's sourdough starter is fed twice a day with rye flour; customers can bring a jar "
    "and take some home on Saturdays.",
    "The council will vote on Tuesday on closing the branch library on Elm Street to save 40,000 "
    "a year.",
    "Lemma 3. Every finite group of prime order is cyclic. Proof: take any non-identity element.",
)
ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def _persona_key_schema(count: int) -> type[BaseModel]:
    """The expansion schema as it was asked before: the persona under the key ``persona``."""
    from personahub.core.text_bounds import DIGITS, SHORT
    from personahub.personas.quality import PERSONA_MAX_CHARS, RELATION_MAX_CHARS

    class Related(BaseModel):
        relation: Annotated[str, SHORT, DIGITS] = Field(min_length=2, max_length=RELATION_MAX_CHARS)
        persona: Annotated[str, DIGITS] = Field(min_length=12, max_length=PERSONA_MAX_CHARS,
                                                description="a one-sentence persona description")

    return create_model("RelatedPersonas", people=(list[Related], Field(min_length=count,
                                                                          max_length=count)))


def _asks(which: str, variant: str) -> list[tuple[list[dict[str, str]], type[BaseModel], str, int]]:
    """(messages, bounded schema, list key, max_tokens) for one seed of ``which``."""
    from personahub.models.bounds import bounded
    from personahub.personas.expand import EXPAND_MAX_TOKENS, related_personas_schema
    from personahub.personas.text_to_persona import TEXT_TO_PERSONA_MAX_TOKENS, text_personas_schema
    from personahub.pipelines.prompts.personas import expand_messages, text_to_persona_messages
    from tests.conftest import persona_texts

    def wire(messages: list[Any]) -> list[dict[str, str]]:
        return [{"role": ROLES[m.type], "content": str(m.content)} for m in messages]

    if which == "t2p":
        budget = TEXT_TO_PERSONA_MAX_TOKENS
        return [(wire(text_to_persona_messages(t, "read", 1)),
                 bounded(text_personas_schema(1), budget), "personas", budget) for t in TEXTS]
    budget = EXPAND_MAX_TOKENS
    schema = _persona_key_schema(2) if variant == "persona-key" else related_personas_schema(2)
    return [(wire(expand_messages(p, 2)), bounded(schema, budget), "people", budget)
            for p in persona_texts(4)]


def _screen(which: str, answer: BaseModel, key: str, shown: str) -> list[str]:
    """The gate's outcome for each persona of one answer."""
    from personahub.personas.quality import gate_persona, max_length

    out = []
    for item in getattr(answer, key):
        _, issue = gate_persona(item.persona, shown=shown if which == "expand" else None,
                                bound=max_length(item, "persona"))
        out.append(issue.code if issue else "kept")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--variant", choices=("current", "persona-key"), default="current")
    args = parser.parse_args()

    from openai import OpenAI

    from personahub.models.llamacpp import local_llama_cpp_server

    counts = {"t2p": Counter[str](), "expand": Counter[str]()}
    with local_llama_cpp_server() as server:
        client = OpenAI(base_url=server.base_url, api_key="none")
        for seed in range(args.seeds):
            for which in counts:
                for messages, schema, key, budget in _asks(which, args.variant):
                    reply = client.chat.completions.create(
                        model=server.model, messages=messages, max_tokens=budget, seed=seed,  # type: ignore[arg-type]
                        temperature=0.8, response_format={"type": "json_schema", "json_schema": {
                            "name": schema.__name__, "schema": schema.model_json_schema()}})
                    choice = reply.choices[0]
                    if choice.finish_reason != "stop":
                        counts[which]["cut"] += 1
                        continue
                    try:
                        answer = schema.model_validate_json(choice.message.content or "{}")
                    except ValueError:  # pydantic's ValidationError: the grammar let it through
                        counts[which]["invalid"] += 1
                        continue
                    counts[which].update(_screen(which, answer, key, messages[-1]["content"]))
    for which, outcome in counts.items():
        print(which, dict(outcome.most_common()))
    print("RESULT " + " ".join(
        f"{which} kept={c['kept']}/{sum(c.values())} cut={c['cut']}" for which, c in counts.items()))


if __name__ == "__main__":
    main()
