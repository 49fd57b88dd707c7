"""--compare: an effect the reference experiment finds and the compared one misses (not
significant, or its interval holds 0) does not agree, even with the estimate inside the
reference interval: in the line, the verdict, the command's last line and the report's."""

import pandas as pd

from personahub.analysis.experiment_effects import agreement, agreement_verdict
from personahub.analysis.experiment_report import experiment_agreement
from personahub.cli.experiment import _agreement_lines

KEYS = {"treatment": "rumour", "control": "quiet", "unit": "percentage points"}


def _table(*rows: tuple[str, float, float, float, bool]) -> pd.DataFrame:
    return pd.DataFrame([{"outcome": o, **KEYS, "effect": e, "ci_low": lo, "ci_high": hi,
                          "significant": sig} for o, e, lo, hi, sig in rows])


# per agent: the rumour lowers intent (significant), moves nothing else
PER_AGENT = _table(("intent@5", -10.0, -16.0, -4.0, True), ("held@5", -9.0, -15.0, -3.0, True),
                   ("fair@5", 0.5, -3.0, 4.0, False), ("found@5", -8.0, -14.0, -2.0, True))
# archetypes: inside each interval, yet intent and held@5 are no effect (not significant; an
# interval through 0), found@5 is found as well
ARCHETYPES = _table(("intent@5", -5.0, -12.0, 2.0, False), ("held@5", -5.0, -10.0, 0.5, True),
                    ("fair@5", 0.0, -2.0, 2.0, False), ("found@5", -6.0, -9.0, -3.0, True))


def test_an_effect_found_per_agent_and_missed_with_archetypes_does_not_agree():
    table = agreement(PER_AGENT, ARCHETYPES, base_label="experiment full",
                      compared_label="experiment arch")
    assert list(table["agrees"]) == [False, False, True, True]
    assert list(table["missed"]) == [True, True, False, False]
    intent, held = table["line"][0], table["line"][1]
    assert "experiment arch estimates -5.0 percentage points (-12.0 to +2.0, not significant), " \
           "within experiment full's interval -16.0 to -4.0 (its effect -10.0, significant)" in intent
    assert intent.endswith("experiment arch misses the effect experiment full finds; the two do "
                           "not agree.")
    assert "(-10.0 to +0.5, its interval holds 0)" in held
    said = agreement_verdict(table, "experiment full")
    assert said.startswith("agrees on 2 of 4 effects with experiment full")
    assert said.endswith("does not agree on intent@5 (rumour against quiet: experiment full "
                         "finds an effect, this misses it), held@5 (rumour against quiet: "
                         "experiment full finds an effect, this misses it)")


def test_the_command_and_the_report_say_does_not_agree():
    table = agreement(PER_AGENT, ARCHETYPES, base_label="experiment full",
                      compared_label="experiment arch")
    last = _agreement_lines(table, "full", "arch")[-1]
    assert last == ("2 of 4 effects agree with experiment full (within its intervals, and found "
                    "where it finds one); experiment arch does not agree on 2 (it misses 2 "
                    "effects experiment full finds)")
    _, verdict = experiment_agreement(PER_AGENT, "full", ARCHETYPES, "arch")
    assert verdict.startswith("experiment arch agrees on 2 of 4 effects with experiment full")
    assert "does not agree on intent@5" in verdict
    agreeing = agreement(PER_AGENT.iloc[2:], ARCHETYPES, base_label="experiment full",
                         compared_label="experiment arch")
    assert _agreement_lines(agreeing, "full", "arch")[-1] == (
        "2 of 2 effects agree with experiment full (within its intervals, and found where it "
        "finds one)")
