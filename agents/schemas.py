"""The emission kinds under the names used before the task registry (``tasks``).

Code looks kinds up in ``tasks``; these read-only views of the built-in kinds, in the
order they were always listed, stay for the frozen golden data (``tests/agents/test_offline_golden.py``
draws kinds by position).
"""

from __future__ import annotations

from types import MappingProxyType

from personahub.tasks import addressed_kinds, emission_task
from personahub.tasks.survey import survey_schema, survey_value

_BUILT_IN_KINDS = ("instruction", "npc_dialogue", "tool_spec", "conversation", "math_problem",
                   "reasoning_problem", "knowledge_text")

EMISSION_SCHEMAS = MappingProxyType({kind: emission_task(kind).schema for kind in _BUILT_IN_KINDS})
ADDRESSED_KINDS = addressed_kinds()

__all__ = ["ADDRESSED_KINDS", "EMISSION_SCHEMAS", "survey_schema", "survey_value"]
