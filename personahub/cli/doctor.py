"""personahub doctor: probe a model endpoint before a big job (models.doctor)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from personahub.cli.common import console, error_line, one_line_errors, out, say
from personahub.cli.engine import Engine, engine_options

if TYPE_CHECKING:
    from personahub.models.doctor import DoctorReport


@one_line_errors
@engine_options("llm")
def doctor(
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds before one probe request is abandoned.")] = 60.0,
    max_concurrency: Annotated[int, typer.Option(
        "--max-concurrency", min=1, max=1024,
        help="Highest concurrency the load probe tries (it doubles from 1).")] = 32,
    budget: Annotated[float, typer.Option(
        "--budget", min=1, help="Seconds the load probe may spend, about.")] = 60.0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the findings as one JSON object on stdout instead of tables.")] = False,
    *,
    engine: Engine,
) -> None:
    """Probe an endpoint: structured modes it accepts, whether bounded answers close, latency and
    tokens/s at concurrency 1, 2, 4, …, prefix-cache reuse, and the --concurrency to use.

    Exits 1 with the reason when the endpoint cannot serve a job (unreachable, refuses every
    request, no structured mode works).
    """
    from personahub.core.loop import run as run_on_loop
    from personahub.models.client import OFFLINE_MODEL_NAME, redact_spec, resolve_spec
    from personahub.models.doctor import diagnose
    from personahub.models.endpoint_specs import refuse_url_credentials

    spec = resolve_spec(engine.llm)
    if spec.strip() == OFFLINE_MODEL_NAME:
        raise typer.BadParameter("doctor probes a model server; give --llm URL or "
                                 "openai:<model> (or set PERSONAHUB_LLM)", param_hint="'--llm'")
    urls = [u.strip() for u in spec.split(",") if u.strip()] if "://" in spec else [spec]
    for url in urls:  # every URL of a list, before the first is probed
        if "://" in url:
            refuse_url_credentials(url)
    failed = False
    reports = []
    for url in urls:
        with console.status(f"probing {redact_spec(url)} …"):  # shown on a terminal only
            report = run_on_loop(diagnose(url, timeout_s=timeout, max_concurrency=max_concurrency,
                                          budget_s=budget))
        reports.append(report)
        if not as_json:
            _print(report)  # what was found, also when it cannot serve (the refusals say why)
        if report.problem is not None:
            failed = True
            error_line(f"endpoint {report.endpoint} cannot serve a job: {report.problem}")
    if as_json:
        data = [r.as_dict() for r in reports]
        out.print_json(json.dumps(data[0] if len(data) == 1 else data))
    if failed:
        raise typer.Exit(1)


def _print(report: DoctorReport) -> None:
    """Print the findings as rich tables on stdout, warnings and the recommendation on stderr; of an
    endpoint that cannot serve a job, what was probed before it gave up (nothing when it was
    unreachable), and no recommendation."""
    if not report.modes:
        return
    modes = Table(title=f"structured modes at {report.endpoint}")
    modes.add_column("mode", min_width=11, no_wrap=True)
    modes.add_column("verdict", min_width=8, no_wrap=True)
    modes.add_column("ms", justify="right", min_width=5, no_wrap=True)
    modes.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=40)
    for m in report.modes:
        modes.add_row(m.mode, m.verdict, "" if m.latency_ms is None else f"{m.latency_ms:.0f}",
                      m.detail)
    out.print(modes)
    if report.runaway is not None:
        r = report.runaway
        out.print(f"runaway probe ({r.mode}, maxLength string, max_tokens {r.max_tokens}): "
                  f"{'closes' if r.closed else 'DOES NOT CLOSE'} — {r.detail}", soft_wrap=True)
    if not report.levels:
        return
    load = Table(title=f"load ({report.stopped_because})")
    for column in ("concurrency", "requests", "failed", "median latency ms", "tokens/s", "req/s"):
        load.add_column(column, justify="right")
    for x in report.levels:
        load.add_row(str(x.concurrency), str(x.requests), str(x.failed), f"{x.latency_ms:.0f}",
                     f"{x.tokens_per_s:.1f}", f"{x.requests_per_s:.2f}")
    out.print(load)
    cache = report.cache
    if cache is not None:
        if cache.reported and cache.share is not None:
            out.print(f"prefix cache: {cache.cached_tokens} of {cache.prompt_tokens} prompt tokens "
                      f"reused ({cache.share:.0%}, from {cache.source})", soft_wrap=True)
        elif cache.reported:
            out.print(f"prefix cache: {cache.cached_tokens} tokens reused (from {cache.source})")
        else:
            out.print("prefix cache: not reported by this server"
                      + (f" ({cache.source})" if cache.source else ""))
    for warning in report.warnings:
        say(("warning:", "yellow"), " ", warning)
    if report.problem is not None:
        return
    out.print(f"recommended: --concurrency {report.recommended} --structured {report.best_mode} "
              "(or --concurrency auto to follow the server as it goes)", soft_wrap=True)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("doctor",): doctor}
