"""Elicitation methods (calibrate --elicit): one module per method, registered below.

A method's module holds everything about it as one ElicitMethod (`base.py`): its spec, its asks,
its calls, how its stored answers become a distribution per question x group, what a fit may
tune, and how it answers for one persona at run time. Adding a method is one module plus one
register line below; registration order is the order --elicit's usage and help list them.
"""

from __future__ import annotations

from personahub.pipelines.elicit import distribution, distribution_panel, few_shot, logprobs, sample
from personahub.pipelines.elicit.base import (
    Answer,
    Ask,
    AskInputs,
    ElicitMethod,
    QuestionPlan,
    Reading,
    Respondent,
    Setup,
    Stored,
    Tunable,
)
from personahub.pipelines.elicit.registry import (
    check_elicit,
    described,
    find,
    job_order,
    methods,
    parse,
    parse_all,
    register,
    stated_row,
    unregister,
    usage,
)

register(sample.Sample)
register(distribution.Distribution)
register(distribution_panel.DistributionPanel)
register(logprobs.Logprobs)
register(few_shot.FewShot)

__all__ = ["Answer", "Ask", "AskInputs", "ElicitMethod", "QuestionPlan", "Reading", "Respondent",
           "Setup", "Stored", "Tunable", "check_elicit", "described", "find", "job_order", "methods",
           "parse", "parse_all", "register", "stated_row", "unregister", "usage"]
