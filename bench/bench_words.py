"""Words in docstrings and comments, double-backtick references per 100 words, and ``Any`` per 1k lines.

Issue 43 (item 5) compares these with Mesa, datatrove and Concordia (16k-23k words, < 0.4
references per 100 words, ``Any`` 2-8 per 1k lines). Prints one line for the whole ``personahub``
package (the linked root folders included) and one for the public-API/model-layer scope of that
issue; ``python bench/bench_words.py PATH...`` measures the given files or folders instead.
"""

from __future__ import annotations

import ast
import io
import os
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "personahub"
SCOPE = [
    "personahub/api.py", "personahub/any_job.py", "personahub/interviews.py", "personahub/results.py",
    "personahub/runtime.py", "personahub/blocking_call.py", "personahub/models", "personahub/executors",
    "personahub/tasks", "personahub/personas",
]
BACKTICK_REF = re.compile(r"``[^`\n]+``")


def python_files(paths: list[Path]) -> list[Path]:
    """Every ``.py`` file under ``paths``, following the package's folder links, each file once."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.is_file():
            seen.setdefault(os.path.realpath(path), path)
            continue
        for folder, _dirs, files in os.walk(path, followlinks=True):
            for name in files:
                if name.endswith(".py"):
                    file = Path(folder) / name
                    seen.setdefault(os.path.realpath(file), file)
    return sorted(seen.values())


def docstrings(tree: ast.AST) -> list[str]:
    """The module, class and function docstrings of one parsed file."""
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    return [d for n in nodes if (d := ast.get_docstring(n, clean=False))]  # type: ignore[arg-type]


def comments(source: str) -> list[str]:
    """The ``#`` comments of one file's source."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [t.string.lstrip("#") for t in tokens if t.type == tokenize.COMMENT]


def any_uses(tree: ast.AST) -> int:
    """Uses of ``Any`` as a name or as ``typing.Any`` (imports not counted)."""
    return sum(1 for n in ast.walk(tree)
               if (isinstance(n, ast.Name) and n.id == "Any")
               or (isinstance(n, ast.Attribute) and n.attr == "Any"))


def measure(files: list[Path]) -> dict[str, float]:
    """Totals over ``files``: lines, words, references per 100 words, ``Any`` per 1k lines."""
    lines = words = refs = anys = 0
    for file in files:
        source = file.read_text(encoding="utf-8")
        tree = ast.parse(source)
        text = docstrings(tree) + comments(source)
        lines += source.count("\n")
        words += sum(len(t.split()) for t in text)
        refs += sum(len(BACKTICK_REF.findall(t)) for t in text)
        anys += any_uses(tree)
    return {"files": len(files), "lines": lines, "words": words,
            "refs_per_100_words": 100 * refs / max(words, 1), "any_per_1k_lines": 1000 * anys / max(lines, 1)}


def show(label: str, figures: dict[str, float]) -> None:
    """Print one row of figures."""
    print(f"{label:<10} files {figures['files']:>4}  lines {figures['lines']:>6}  words {figures['words']:>6}"
          f"  ``refs``/100 words {figures['refs_per_100_words']:5.2f}"
          f"  Any/1k lines {figures['any_per_1k_lines']:5.1f}")


if __name__ == "__main__":
    if sys.argv[1:]:
        show("given", measure(python_files([Path(p) for p in sys.argv[1:]])))
    else:
        show("package", measure(python_files([PACKAGE])))
        show("scope", measure(python_files([ROOT / p for p in SCOPE])))
