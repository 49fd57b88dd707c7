"""personahub show ID: one synthesis item, emission or persona, whole (registered by
personahub/cli/app.py; the lookup is analysis.preview.show)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from personahub.cli.common import one_line_errors, out, say
from personahub.cli.options import DbOption
from personahub.core.store import DEFAULT_DB


def _value_text(value: Any) -> str:
    """Return a field's value as printed: JSON (content, solution, attributes) indented, the rest as is."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return str(value)


@one_line_errors
def show(
    ident: Annotated[str, typer.Argument(
        metavar="ID", help="A synthesis item id (s…), an emission id (RUN_ID:STEP:AGENT), a "
                           "persona id (p…) or a run id (its row and archetypes), as previews "
                           "and sql print them; a unique prefix of at least 6 characters will "
                           "do.")],
    db: DbOption = Path(DEFAULT_DB),
) -> None:
    """Print one synthesis item, emission, persona or run whole: its persona, text, content and
    every stored field."""
    from personahub.analysis.preview import show as look_up
    from personahub.core.store import connect

    con = connect(db, read_only=True)
    try:
        shown = look_up(con, ident)
    finally:
        con.close()
    say((f"{shown.what} {shown.ident}", "bold"), to=out)
    for name, value in shown.fields:
        text = _value_text(value)
        if "\n" in text or len(text) > 60:
            say((f"{name}:", "bold"), to=out)
            for line in text.splitlines() or [""]:
                say("  ", line, to=out)
        else:
            say((f"{name}:", "bold"), " ", text, to=out)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("show",): show}
