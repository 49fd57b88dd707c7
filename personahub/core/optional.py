"""Optional extras imported on first use, so every module imports without them.

The first attribute a command reaches imports the extra or stops with one line saying which to
install.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from personahub.core.errors import PersonahubError


class OptionalModule:
    """A module imported when one of its attributes is first asked for."""

    def __init__(self, name: str, extra: str) -> None:
        self._name = name
        self._extra = extra
        self._module: ModuleType | None = None

    def _load(self) -> ModuleType:
        if self._module is None:
            try:
                self._module = importlib.import_module(self._name)
            except ImportError as exc:
                raise PersonahubError(f"{self._name} is not installed: pip install -e "
                                      f"'.[{self._extra}]' (the optional [{self._extra}] extra)") from exc
        return self._module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)


# typed Any: Ray's own types are not checked here
ray: Any = OptionalModule("ray", "ray")
