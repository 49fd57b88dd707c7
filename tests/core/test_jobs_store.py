"""``core/jobs_store.py`` owns the SQL on the ``jobs`` table: no other module of the package
holds a statement that reads or writes it (the migration's, which builds it, excepted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("personahub", "agents", "analysis", "personas", "pipelines", "sim", "scenarios")
OWNERS = {"personahub/core/jobs_store.py", "personahub/core/migrate.py"}
ON_JOBS = re.compile(r"\b(from|into|update|join)\s+jobs\b", re.IGNORECASE)


def test_only_the_store_holds_sql_on_jobs() -> None:
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = str(path.relative_to(ROOT))
            if name in OWNERS or path.is_symlink():
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and ON_JOBS.search(node.value):
                    found.append(f"{name}:{node.lineno}")
    assert not found, f"SQL on jobs outside core/jobs_store.py: {found}"
