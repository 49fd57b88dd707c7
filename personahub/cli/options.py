"""The options several commands share beyond the engine's (--db, --carve, --fresh, --resume,
--language, --json, --preview), each declared once, and inject_options, which puts a bundle of
shared options in a command's signature: output_options hands --json and --preview as one Shown."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from personahub.analysis.preview import DEFAULT_PREVIEW
from personahub.cli.common import json_mode
from personahub.core.errors import UsageError

DbOption = Annotated[Path, typer.Option("--db", envvar="PERSONAHUB_DB",
                                        help="DuckDB database file.")]


#: --fresh of the job commands that find an unfinished job by its settings
FreshOption = Annotated[bool, typer.Option(
    help="Start a new job even if an unfinished one has the same settings (it is marked "
         "superseded).")]


def resume_option(metavar: str, keeps: str) -> object:
    """Return the --resume option of a job command, declared once in one wording.

    Args:
        metavar: what the option takes (JOB_ID, or the id a kind finds its job by).
        keeps: what the resumed job keeps from its start, and anything else it does.

    Returns:
        The typer option, for Annotated[str | None, resume_option(...)] = None.
    """
    return typer.Option("--resume", metavar=metavar,
                        help=f"Go on with the stopped job {metavar}; it keeps {keeps}.")


class Injected(NamedTuple):
    """One shared typer parameter a decorator puts in a command's signature: its flag (for the
    error naming it), the parameter typer reads, and the key its value is handed on by."""

    flag: str
    param: inspect.Parameter
    key: str


def inject_options(func: Callable[..., object], place: str, kind: str, options: Sequence[Injected],
                   collect: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """Wrap a command so typer sees shared options in place of one bundled parameter.

    The shared parameters go where `func` declares the keyword-only parameter `place`, in
    the given order (their --help order). At call time their values, by key, go through
    `collect`, and the result is passed as `place`. engine_options and output_options
    both use this.

    Raises:
        TypeError: func has no keyword-only `place`, or declares one of the options itself.
    """
    signature = inspect.signature(func, eval_str=True)
    own = signature.parameters
    spot = own.get(place)
    if spot is None or spot.kind is not inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"{func.__name__}: declare a keyword-only '{place}: {kind}' parameter")
    listed = [o.flag for o in options if o.param.name in own]
    if listed:
        raise TypeError(f"{func.__name__} lists {', '.join(listed)} itself")
    params = [q for p in own.values()
              for q in ([o.param.replace(kind=p.kind) for o in options] if p is spot else [p])]

    @functools.wraps(func)
    def command(*args: object, **kwargs: object) -> object:
        given = {o.key: kwargs.pop(o.param.name, o.param.default) for o in options}
        return func(*args, **{place: collect(given)}, **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {**{p.name: p.annotation for p in params},
                               "return": signature.return_annotation}
    return command


def embedder_spec(value: str) -> str:
    """Check --embedder (report, diversity) as it is parsed, before any database opens.

    An unknown spec is a usage error (exit 2) naming the flag; the check itself is
    personas.embedding.check_embedder_spec, shared with the library."""
    from personahub.personas.embedding import check_embedder_spec

    try:
        check_embedder_spec(value)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def embedder_spec_or_none(value: str) -> str:
    """Parse personas dedup --embedder: as embedder_spec, or "none" (skip stage 2)."""
    return value if value.strip().lower() in ("", "none") else embedder_spec(value)


LanguageOption = Annotated[str | None, typer.Option(
    help="Ask for personas in this language (en, fr, zh, ... or a name); the quality gate rejects "
         "answers in another script.")]


#: synthesize's and calibrate's --carve, declared once (personas.carve parses each condition)
CarveOption = Annotated[list[str] | None, typer.Option(
    "--carve", help="Persona condition KEY OP VALUE as in personas sample -w (OP one of = != >= "
                    "<= > < ~), e.g. \"age>30\" or \"occupation~nurse\"; repeat to require "
                    "several; each narrows the personas drawn.")]


#: run's and experiment's --archetype-elicit, declared once (RunConfig checks the value)
ArchetypeElicitOption = Annotated[str | None, typer.Option(
    "--archetype-elicit", metavar="HOW",
    help="How an archetype's answer distribution is elicited, by calibrate --elicit's method "
         "of that name: 'distribution' (its representative states the shares, one call; also "
         "'stated') or 'sample:N' (N of its asked members answer; default: the scenario's, "
         "else distribution).")]


#: run's and experiment's --survey-profile, declared once (the run checks the id and the model)
SurveyProfileOption = Annotated[str | None, typer.Option(
    "--survey-profile", metavar="CALIBRATION_ID",
    help="Answer every choice survey with the survey profile a calibration fitted (calibrate "
         "--fit): each agent's answer drawn, seeded, from the profile's answer distribution for "
         "it (archetypes' shares too); overrides the surveys' own profile. A profile fitted on "
         "another model is refused.")]


JsonOption = Annotated[bool, typer.Option(
    "--json", callback=json_mode,
    help="When done, print one JSON object on stdout: ids, status, counts, paths (what the "
         "command prints there otherwise goes to stderr).")]


PreviewOption = Annotated[int, typer.Option(
    "--preview", min=0, metavar="N",
    help="At the end, a table of N sampled outputs per kind/task beside their persona (0: none; "
         "-q: none). personahub show ID prints one whole.")]


@dataclass(frozen=True)
class Shown:
    """How a command shows its result, as output_options hands it.

    preview is the rows per kind in the end-of-job table (0 if the command takes no
    --preview); json says whether --json was given."""

    preview: int = 0
    json: bool = False


#: the output options, in --help order: (flag, typer parameter, Shown field)
_OUTPUT_OPTIONS = {
    "preview": Injected("--preview", inspect.Parameter(
        "preview", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_PREVIEW,
        annotation=PreviewOption), "preview"),
    "json": Injected("--json", inspect.Parameter(
        "as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOption), "json")}


def output_options(*, preview: bool = False) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Give a job command --json (and --preview if asked) bundled as one Shown value.

    The command declares a keyword-only `shown: Shown` parameter, before `engine`. A
    command that declares either option itself is refused.

    Returns:
        A decorator for the command function (below engine_options).
    """
    options = [_OUTPUT_OPTIONS["preview"]] if preview else []
    options.append(_OUTPUT_OPTIONS["json"])

    def decorate(func: Callable[..., object]) -> Callable[..., object]:
        return inject_options(func, "shown", "Shown", options, lambda given: Shown(**given))

    return decorate


