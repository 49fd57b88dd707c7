"""``personahub.core.optional``: an optional extra is imported on first use, and a missing one is
one line naming the extra to install."""

from __future__ import annotations

import pytest

from personahub.core.errors import PersonahubError
from personahub.core.optional import OptionalModule


def test_a_missing_extra_is_one_line_naming_it() -> None:
    proxy = OptionalModule("personahub_no_such_package", "ray")
    with pytest.raises(PersonahubError, match=r"personahub_no_such_package is not installed: "
                                              r"pip install -e '\.\[ray\]'"):
        proxy.init()


def test_an_installed_module_is_imported_on_first_use() -> None:
    assert OptionalModule("json", "none").dumps([1]) == "[1]"
