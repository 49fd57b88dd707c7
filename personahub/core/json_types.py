"""Types of JSON values as they cross the wire, the database and the options of a job.

A recursive alias in place of ``Any``: mypy checks what is read from a payload, and narrowing
(``isinstance``) is needed before a value is used as a particular type.
"""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | None | list[JsonValue] | dict[str, JsonValue]"
JsonObject: TypeAlias = "dict[str, JsonValue]"
