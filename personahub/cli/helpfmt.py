"""--help as plain text that reads well at any width: paragraphs reflowed (docstrings are
hard-wrapped in the source), lists and indented examples kept, no RST marks, one label per option
(-d, --db PATH; choices as [off|record|replay]; flags with no value label), options
grouped into sections by their rich_help_panel.

Typer's own help is not used: it shows <bool> after every flag, <str> for choices and the
source's line breaks, and reads text as Rich markup (personahub[embed] loses [embed]). This
module reads only what click's objects hold (names, help, defaults, types), so it does not depend
on Typer's renderer, which changes between releases.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING, Protocol, get_args, get_origin

if TYPE_CHECKING:  # typer >= 0.22 runs on its own copy of click
    from typer._click.core import Parameter

MAX_WIDTH = 100  # wider lines are hard to read, whatever the terminal
MIN_WIDTH = 50
LABEL_MAX = 30  # a longer option label puts its help on the next line
INDENT = "  "
OPTIONS_SECTION = "Options"
# Bounds this large are the type's, not a real limit (seeds go up to 2**63 - 1).
UNBOUNDED = 2**31



class OptionBounds(Protocol):
    """The bounds an option's own check declares (cli.engine.OptionCheck)."""

    @property
    def low(self) -> float | None: ...

    @property
    def high(self) -> float | None: ...

    @property
    def above(self) -> float | None: ...


_NBSP = "\u00a0"  # textwrap breaks at ASCII whitespace only
_LITERAL = re.compile(r"``([^`]+)``")
_LIST_ITEM = re.compile(r"^(\s*)([-*•]|\d+[.)])\s+")


# --- text -----------------------------------------------------------------------------------

def plain(text: str) -> str:
    """Strip RST marks from text: double-backquoted code loses its quotes, a line-ending "::"
    becomes ":" (" ::" is dropped), and a line of only "::" goes."""
    text = _LITERAL.sub(r"\1", text)
    text = re.sub(r"(?m)(?<=\S) ::$", "", text)
    text = re.sub(r"(?m)(?<=\S)::$", ":", text)
    return re.sub(r"(?m)^\s*::\s*$", "", text)


def paragraphs(text: str) -> list[str]:
    """Return the paragraphs of a docstring-like text (dedented; \\f and what follows dropped)."""
    text = textwrap.dedent(text.partition("\f")[0]).strip("\n")
    if "\n" in text:  # docstrings: the first line has no indent, the others do
        first, rest = text.split("\n", 1)
        text = first.strip() + "\n" + textwrap.dedent(rest)
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _is_verbatim(paragraph: str) -> bool:
    """Tell whether a paragraph is an example or a preformatted block: indented, a shell prompt, or click's
    \\b mark."""
    lines = paragraph.splitlines()
    return (paragraph.startswith("\b") or all(line.startswith((" ", "\t")) for line in lines)
            or lines[0].lstrip().startswith("$ "))


def _list_items(lines: list[str]) -> list[tuple[str, str]]:
    """(marker, text) per item of a list (continuation lines joined to their item)."""
    first = _LIST_ITEM.match(lines[0])
    depth = len(first.group(1)) if first is not None else 0
    items: list[tuple[str, str]] = []
    for line in lines:
        match = _LIST_ITEM.match(line)
        if match is not None and len(match.group(1)) <= depth:
            items.append((match.group(2), line[match.end():].strip()))
        elif items:
            marker, body = items[-1]
            items[-1] = (marker, f"{body} {line.strip()}")
    return items


def _blocks(paragraph: str) -> list[tuple[str, list[str]]]:
    """Return a paragraph as ("verbatim" | "prose" | "list", lines) blocks: a lead sentence followed
    by a list is prose then list."""
    if _is_verbatim(paragraph):
        return [("verbatim", paragraph.lstrip("\b").strip("\n").splitlines())]
    lines = paragraph.splitlines()
    start = next((i for i, line in enumerate(lines) if _LIST_ITEM.match(line)), None)
    if start is None:
        return [("prose", lines)]
    return ([("prose", lines[:start])] if start else []) + [("list", lines[start:])]


def reflow(text: str, width: int, indent: str = "") -> str:
    """Wrap text to width: each paragraph's lines joined and wrapped again, list items
    with a hanging indent, indented examples as they are; paragraphs separated by a blank line."""
    out: list[str] = []
    for paragraph in paragraphs(plain(text)):
        parts: list[str] = []
        for kind, lines in _blocks(paragraph):
            if kind == "verbatim":
                parts.append("\n".join((indent + line).rstrip() for line in lines))
            elif kind == "list":
                parts.append("\n".join(textwrap.fill(
                    body, width, initial_indent=f"{indent}{marker} ",
                    subsequent_indent=indent + " " * (len(marker) + 1), break_on_hyphens=False,
                    break_long_words=False) for marker, body in _list_items(lines)))
            else:
                parts.append(textwrap.fill(" ".join(" ".join(lines).split()), width,
                                           initial_indent=indent, subsequent_indent=indent,
                                           break_on_hyphens=False, break_long_words=False))
        out.append("\n".join(parts))
    return "\n\n".join(out)


def summary(text: str | None) -> str:
    """Return the first paragraph of a help text, on one line, without RST marks."""
    parts = paragraphs(plain(text or ""))
    return " ".join(parts[0].split()) if parts else ""


# --- parameters -----------------------------------------------------------------------------

def choices(param: Parameter) -> tuple[str, ...] | None:
    """Return the values a parameter accepts, when it is a choice (a Literal/Enum annotation in
    Typer >= 0.2x, a click.Choice before)."""
    descriptor = getattr(param, "type_descriptor", None)
    found = getattr(descriptor, "choices", None) if descriptor is not None else None
    if found is None:
        found = getattr(getattr(param, "type", None), "choices", None)
    if found is None:
        return None
    return tuple(str(getattr(c, "value", c)) for c in found)


def _annotation(param: Parameter) -> object:
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if get_origin(annotation) is list:
        annotation = get_args(annotation)[0]
    return annotation


def value_label(param: Parameter) -> str:
    """Return what follows an option's name in help: nothing for a flag, the declared metavar, the
    choices as [a|b|c], or the type (N, X, PATH, TEXT)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    options = choices(param)
    if options is not None:
        return "[" + "|".join(options) + "]"
    annotation = _annotation(param)
    if annotation is int:
        return "N"
    if annotation is float:
        return "X"
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "PATH"
    name = getattr(getattr(param, "type", None), "name", "") or ""
    return {"integer": "N", "float": "X", "path": "PATH", "file": "FILE"}.get(name.lower(), "TEXT")


def argument_label(param: Parameter) -> str:
    """Return an argument as usage shows it: SCENARIO, [QUERY] when optional, FILE...."""
    name = str(param.metavar or (param.name or "").upper())
    if getattr(param, "nargs", 1) == -1:
        name += "..."
    return name if param.required else f"[{name}]"


def option_label(param: Parameter) -> str:
    """-d, --db PATH; long names aligned past short ones. Of a boolean pair Typer makes
    (--force/--no-force) only the one that changes the default is shown."""
    shorts = [o for o in param.opts if not o.startswith("--")]
    longs = [o for o in param.opts if o.startswith("--")]
    negatives = list(getattr(param, "secondary_opts", []) or [])
    if len(longs) == 1 and negatives == ["--no-" + longs[0][2:]]:
        longs, negatives = ([], negatives) if param.default else (longs, [])
    names = ", ".join([*shorts, *longs, *negatives])
    label = names if shorts else "    " + names
    value = value_label(param)
    return f"{label} {value}" if value else label


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _checked_by(param: Parameter) -> OptionBounds | None:
    """Return the object whose method is the parameter's callback or parser as declared, or None.

    An option whose check declares its bounds (the engine options' cli.engine.OptionCheck,
    with low, high and above) has them shown from there, as typer is given no min or max."""
    info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    for hook in (getattr(info, "callback", None), getattr(info, "parser", None)):
        owner = getattr(hook, "__self__", None)
        if owner is not None and hasattr(owner, "above"):
            return owner
    return None


def bounds(param: Parameter) -> str:
    """Describe a number option's range as x>=1, 0<=x<=2 or 0<x<=1 (type-sized bounds left out)."""
    checked = _checked_by(param)
    if checked is not None:
        low, high, above = checked.low, checked.high, checked.above
    else:
        low, high, above = getattr(param, "min", None), getattr(param, "max", None), None
    if high is not None and abs(high) >= UNBOUNDED:
        high = None
    # the lower bound, how it reads before x and after it
    start = ((low, "<=", ">=") if low is not None
             else (above, "<", ">") if above is not None else None)
    if start is not None and high is not None:
        return f"{_number(start[0])}{start[1]}x<={_number(high)}"
    if start is not None:
        return f"x{start[2]}{_number(start[0])}"
    if high is not None:
        return f"x<={_number(high)}"
    return ""


def _default_text(param: Parameter) -> str:
    default = param.default
    if callable(default) or default is None or getattr(param, "show_default", True) is False:
        return ""
    if getattr(param, "is_flag", False):
        if not default:
            return ""
        return param.opts[-1] if getattr(param, "secondary_opts", None) else "on"
    if isinstance(default, (list, tuple)):
        return ", ".join(str(d) for d in default)
    if isinstance(default, str) and not default:
        return ""
    return str(getattr(default, "value", default))


def extras(param: Parameter) -> str:
    """Return the bracketed facts after a parameter's help: default, environment variable, range,
    required."""
    facts = []
    default = _default_text(param)
    if default:
        facts.append(f"default: {default}")
    envvar = getattr(param, "envvar", None)
    if envvar and getattr(param, "show_envvar", True):
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        facts.append("env: " + ", ".join(names))
    limits = bounds(param)
    if limits:
        facts.append(limits)
    if param.required:
        facts.append("required")
    # a fact never breaks across lines ("[default:" / "200]" reads badly); between facts it may
    return "[" + "; ".join(f.replace(" ", _NBSP) for f in facts) + "]" if facts else ""


def param_help(param: Parameter) -> str:
    """Return a parameter's help on one line (reflowed later), then its extras."""
    text = " ".join(" ".join(paragraphs(plain(getattr(param, "help", None) or ""))).split())
    more = extras(param)
    return f"{text}  {more}" if text and more else text or more


# --- layout ---------------------------------------------------------------------------------

def width_now() -> int:
    """Return the terminal's width (COLUMNS first), between MIN_WIDTH and MAX_WIDTH."""
    columns = shutil.get_terminal_size((80, 24)).columns
    return max(MIN_WIDTH, min(MAX_WIDTH, columns))


def label_column(rows: Iterable[tuple[str, str]], width: int) -> int:
    """Return the width of the label column: the longest label that fits (LABEL_MAX, or a third of
    a narrow page), plus a gap; a longer label goes on a line of its own."""
    cap = min(LABEL_MAX, width // 3)
    return max((len(label) for label, _ in rows if len(label) <= cap), default=cap) + 2


def two_columns(rows: Sequence[tuple[str, str]], width: int, column: int | None = None) -> str:
    """Rows of (label, text): labels in a column (label_column unless given), text wrapped
    beside them; a longer label gets its text on the next line."""
    column = column or label_column(rows, width)
    text_width = max(width - len(INDENT) - column, 20)
    lines: list[str] = []
    for label, text in rows:
        wrapped = [w.replace(_NBSP, " ") for w in textwrap.wrap(
            text, text_width, break_on_hyphens=False, break_long_words=False)] or [""]
        if len(label) > column - 2:
            lines.append((INDENT + label).rstrip())
            lines.extend(INDENT + " " * column + w for w in wrapped)
            continue
        lines.append((INDENT + label.ljust(column) + wrapped[0]).rstrip())
        lines.extend(INDENT + " " * column + w for w in wrapped[1:])
    return "\n".join(lines)


def usage_line(command_path: str, params: Iterable[Parameter], is_group: bool) -> str:
    """Usage: personahub run [OPTIONS] [SCENARIO]."""
    pieces = [command_path, "[OPTIONS]"]
    pieces += [argument_label(p) for p in params if p.param_type_name == "argument"]
    if is_group:
        pieces.append("COMMAND [ARGS]...")
    return "Usage: " + " ".join(pieces)


def sections(params: Iterable[Parameter]) -> list[tuple[str, list[Parameter]]]:
    """Visible options grouped by rich_help_panel: Options first, then the others in
    the order they first appear."""
    grouped: dict[str, list[Parameter]] = {OPTIONS_SECTION: []}
    for param in params:
        if param.param_type_name == "option" and not getattr(param, "hidden", False):
            grouped.setdefault(getattr(param, "rich_help_panel", None) or OPTIONS_SECTION,
                               []).append(param)
    return [(name, items) for name, items in grouped.items() if items]


def render(*, command_path: str, help_text: str | None, params: Sequence[Parameter],
           subcommands: Sequence[tuple[str, str | None]] | None, width: int) -> str:
    """Render the whole help page: usage, description, arguments, option sections, commands."""
    blocks = [usage_line(command_path, params, subcommands is not None)]
    if help_text:
        blocks.append(reflow(help_text, width - len(INDENT), INDENT))
    arguments = [p for p in params if p.param_type_name == "argument"
                 and not getattr(p, "hidden", False)]
    tables: list[tuple[str, list[tuple[str, str]]]] = []
    if arguments:
        tables.append(("Arguments", [(argument_label(p).strip("[]"), param_help(p))
                                     for p in arguments]))
    for name, options in sections(params):
        tables.append((name, [(option_label(p), param_help(p)) for p in options]))
    if subcommands:
        tables.append(("Commands", [(name, summary(text)) for name, text in subcommands]))
    column = label_column((row for _, rows in tables for row in rows), width)  # one for all
    blocks += [f"{name}:\n" + two_columns(rows, width, column) for name, rows in tables]
    return "\n\n".join(blocks) + "\n"
