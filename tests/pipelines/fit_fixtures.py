"""A self-made OpinionQA-format wave for `calibrate --fit` (invented counts, no survey data).

Twelve questions (eight ordinal with a refusal option, four nominal), answered by the groups of
two attributes, SEX and POLPARTY, with counts drawn from a seeded Dirichlet so that groups
differ and no question is answered uniformly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ORDINAL = ("A great deal", "Some", "Not much", "Not at all", "Refused")
NOMINAL = ("The town", "The county", "The state", "Refused")
TOPICS = ("the library", "the bus service", "the river path", "the market hall", "the schools",
          "the clinic", "the parks", "the fire service", "the bridge repair", "the water supply",
          "the night buses", "the sports ground")
GROUPS = {"SEX": ("Female", "Male"), "POLPARTY": ("Democrat", "Republican")}


def wave_questions(n: int = 12) -> dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]]:
    """Question id -> (text, options, ordinal positions of the substantive options)."""
    out = {}
    for i in range(n):
        qid = f"Q{i + 1:02d}_W99"
        if i % 3 == 2:
            out[qid] = (f"Who should pay for {TOPICS[i % len(TOPICS)]}?", NOMINAL, (1.0, 1.0, 1.0))
        else:
            out[qid] = (f"How much do you trust the council with {TOPICS[i % len(TOPICS)]}?",
                        ORDINAL, (1.0, 2.0, 3.0, 4.0))
    return out


def wave_counts(n: int = 12, seed: int = 62) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Attribute -> question id -> group -> counts per option (refusals last, small)."""
    rng = np.random.default_rng(seed)
    counts: dict[str, dict[str, dict[str, list[float]]]] = {a: {} for a in GROUPS}
    for qid, (_, options, ordinal) in wave_questions(n).items():
        base = rng.dirichlet(np.full(len(ordinal), 1.5))
        for attribute, groups in GROUPS.items():
            per = counts[attribute].setdefault(qid, {})
            for group in groups:
                shares = rng.dirichlet(40 * base + 0.5)
                people = rng.multinomial(120, shares).astype(float).tolist()
                per[group] = [*people, float(rng.integers(0, 4))] if len(options) > len(
                    ordinal) else people
    return counts


def write_wave(folder: Path, n: int = 12, seed: int = 62) -> Path:
    """Write the wave as OpinionQA releases one: info.csv and one <ATTRIBUTE>_data.json each."""
    folder.mkdir(parents=True, exist_ok=True)
    questions = wave_questions(n)
    lines = [",key,question,references,option_ordinal"]
    for i, (qid, (text, options, ordinal)) in enumerate(questions.items()):
        references = "[" + ", ".join(f"'{o}'" for o in options) + "]"
        positions = "[" + ", ".join(str(p) for p in ordinal) + "]"
        lines.append(f'{i},{qid},"{text}","{references}","{positions}"')
    (folder / "info.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for attribute, per_question in wave_counts(n, seed).items():
        data = {}
        for qid, groups in per_question.items():
            text, options, _ = questions[qid]
            data[qid] = {"MC_options": list(options), "question_text": text,
                         **{g: dict(zip(options, c, strict=True)) for g, c in groups.items()}}
        (folder / f"{attribute}_data.json").write_text(json.dumps(data), encoding="utf-8")
    return folder
