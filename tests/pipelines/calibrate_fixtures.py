"""Self-made calibration fixtures (invented counts, no survey data): a long-CSV survey and a
seeded population with the demographics its groups name."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.cli_helpers import invoke

# question id -> (text, options, ordinal positions or None for nominal)
QUESTIONS: dict[str, tuple[str, list[str], list[float] | None]] = {
    "SAFE": ("How safe is your street at night?",
             ["Very safe", "Somewhat safe", "Not too safe", "Not at all safe", "Refused"],
             [1, 2, 3, 4]),
    "WORLD": ("Compared to 50 years ago, is the world", ["Safer", "More dangerous", "Neither",
                                                          "Refused"], [1, 2, 1.5]),
    "WHY": ("Why do you own a bicycle?", ["Exercise", "Commuting", "Fun", "Refused"], None),
}
# (attribute, group) -> per question, counts per option (in QUESTIONS' order)
COUNTS: dict[tuple[str, str], dict[str, list[float]]] = {
    ("SEX", "Female"): {"SAFE": [30, 50, 15, 5, 2], "WORLD": [10, 60, 20, 1], "WHY": [5, 3, 2, 0]},
    ("SEX", "Male"): {"SAFE": [45, 40, 10, 0, 1], "WORLD": [25, 50, 25, 0], "WHY": [2, 6, 2, 1]},
    ("POLPARTY", "Democrat"): {"SAFE": [20, 50, 25, 5, 0], "WORLD": [30, 40, 30, 2],
                               "WHY": [4, 4, 2, 0]},
    ("POLPARTY", "Republican"): {"SAFE": [55, 35, 10, 0, 1], "WORLD": [5, 80, 15, 0],
                                 "WHY": [3, 5, 2, 0]},
    ("AGE", "65+"): {"SAFE": [40, 45, 12, 1, 3], "WORLD": [20, 60, 20, 0], "WHY": [6, 1, 3, 0]},
    ("Overall", "all"): {"SAFE": [75, 90, 25, 5, 3], "WORLD": [35, 110, 45, 1],
                         "WHY": [7, 9, 4, 1]},
}
MARGINALS = """attribute,value,share
sex,female,0.5
sex,male,0.5
party,democrat,0.5
party,republican,0.5
"""


# five questions, three groups: what the real-model test asks SmolLM2
FIVE_QUESTIONS = {**QUESTIONS,
                  "TRUST": ("How much do you trust your neighbours?",
                            ["A lot", "Some", "Not much", "Not at all", "Refused"], [1, 2, 3, 4]),
                  "NEWS": ("Where do you get most of your news?",
                           ["Television", "Websites", "Radio", "Print", "Refused"], None)}
FIVE_COUNTS = {
    key: {**COUNTS[key], "TRUST": trust, "NEWS": news}
    for key, trust, news in ((("SEX", "Female"), [20, 50, 20, 10, 1], [40, 30, 20, 10, 0]),
                             (("SEX", "Male"), [25, 45, 25, 5, 0], [30, 40, 20, 10, 1]),
                             (("POLPARTY", "Democrat"), [15, 55, 20, 10, 0], [35, 45, 10, 10, 0]),
                             (("Overall", "all"), [45, 95, 45, 15, 1], [70, 70, 40, 20, 1]))}

# four questions for every group of COUNTS: what --elicit logprobs needs (three fit its temperature)
FOUR_QUESTIONS = {**QUESTIONS, "TRUST": FIVE_QUESTIONS["TRUST"]}
FOUR_COUNTS = {
    key: {**COUNTS[key], "TRUST": trust}
    for key, trust in ((("SEX", "Female"), [20, 50, 20, 10, 1]), (("SEX", "Male"), [25, 45, 25, 5, 0]),
                       (("POLPARTY", "Democrat"), [15, 55, 20, 10, 0]),
                       (("POLPARTY", "Republican"), [30, 40, 25, 5, 0]),
                       (("AGE", "65+"), [35, 45, 15, 5, 1]), (("Overall", "all"), [45, 95, 45, 15, 1]))}


def write_survey(path: Path, questions: dict[str, tuple[str, list[str], list[float] | None]] = QUESTIONS,
                 counts: dict[tuple[str, str], dict[str, list[float]]] = COUNTS) -> Path:
    """The long CSV of ``questions`` x ``counts`` (by default AGE=65+ matches no persona of the
    population)."""
    asked, answered = questions, counts
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["question_id", "question", "options", "ordinal", "attribute", "group",
                         "option", "count"])
        for (attribute, group), per_question in answered.items():
            for qid, vector in per_question.items():
                text, options, ordinal = asked[qid]
                positions = " | ".join(str(p) for p in ordinal) if ordinal else ""
                for option, count in zip(options, vector, strict=True):
                    writer.writerow([qid, text, " | ".join(options), positions, attribute, group,
                                     option, count])
    return path


def make_population(tmp_path: Path, db: Path, n: int = 60, seed: int = 0) -> str:
    """A seeded template population over sex and party in ``db``; returns its id."""
    marginals = tmp_path / "marginals.csv"
    marginals.write_text(MARGINALS, encoding="utf-8")
    result = invoke("personas", "sample-population", "--marginals", marginals, "--n", n,
                    "--seed", seed, "--db", db)
    assert result.exit_code == 0, result.output
    return result.stdout.split()[1].rstrip(":")
