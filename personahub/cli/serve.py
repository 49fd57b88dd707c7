"""personahub serve: the offline engine as an OpenAI-compatible endpoint on loopback."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from personahub.cli.common import console, one_line_errors, serve_until_stopped
from personahub.core.validate import MAX_SEED
from personahub.models.fake_server.request_bounds import HEADER_TIMEOUT_S, KEEP_ALIVE_S, MAX_CONNECTIONS


@one_line_errors
def serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(min=0, max=MAX_SEED, help="Offline engine seed.")] = 0,
    latency: Annotated[float, typer.Option(
        min=0, help="Seconds from a request's arrival to its answer.")] = 0.0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 429/500.")] = 0.0,
    malformed_rate: Annotated[float, typer.Option(
        help="Share answered with broken JSON (the intended answer cut in half; a repair prompt "
             "gets it whole, unless --stubborn).")] = 0.0,
    stubborn: Annotated[bool, typer.Option(
        "--stubborn", help="Repair prompts get broken JSON at --malformed-rate too.")] = False,
    hang_rate: Annotated[float, typer.Option(help="Share of requests that hang.")] = 0.0,
    hang_seconds: Annotated[float, typer.Option(min=0, help="How long a hang lasts.")] = 30.0,
    runaway_rate: Annotated[float, typer.Option(
        help="Share of answers whose last string repeats until max_tokens (cut off), unless the "
             "request's schema bounds it with maxLength (then the JSON closes), as "
             "grammar-constrained servers do with small models.")] = 0.0,
    bad_usage_rate: Annotated[float, typer.Option(
        help="Share of answers whose usage reports impossible token counts (completion_tokens "
             "10**15, prompt_tokens -100).")] = 0.0,
    dialect: Annotated[Literal["openai", "openai-strict", "vllm", "vllm-legacy",
                               "llama-cpp-python", "ollama", "tools-only"], typer.Option(
        help="Answer as this server does.")] = "openai",
    logprobs: Annotated[bool, typer.Option(
        help="Answer token log-probabilities when a request asks logprobs=true (seeded letter "
             "probabilities); --no-logprobs acts as a server that ignores the request.")] = True,
    retry_after: Annotated[float | None, typer.Option(
        min=0, help="Seconds sent as Retry-After on 429/503 answers.")] = None,
    model: Annotated[list[str] | None, typer.Option(
        help="Model name to serve (repeatable); /v1/models lists them and other names get a 404 "
             "model_not_found. Default: any name is answered.")] = None,
    batch_delay: Annotated[float, typer.Option(
        min=0, help="Batch API: seconds from a batch's start to its completion (its requests "
                    "are answered spread over them).")] = 0.0,
    batch_error_rate: Annotated[float, typer.Option(
        help="Batch API: share of a batch's requests answered 500 in its error file.")] = 0.0,
    batch_fail_rate: Annotated[float, typer.Option(
        help="Batch API: share of batches that fail validation (status failed).")] = 0.0,
    batch_expire_rate: Annotated[float, typer.Option(
        help="Batch API: share of batches that expire with half their requests answered.")] = 0.0,
    batch_fail: Annotated[list[int] | None, typer.Option(
        help="Batch API: the Nth batch created fails (repeatable; 1 = the first).")] = None,
    batch_expire: Annotated[list[int] | None, typer.Option(
        help="Batch API: the Nth batch created expires (repeatable; 1 = the first).")] = None,
    fault_seed: Annotated[int, typer.Option(
        help="Seed of every injected fault (online and batch).")] = 1234,
    header_timeout: Annotated[float, typer.Option(
        help="Seconds a request's headers may take from its first byte; a slower connection "
             "is closed.")] = HEADER_TIMEOUT_S,
    keep_alive: Annotated[float, typer.Option(
        help="Seconds an idle connection is kept open for its next request.")] = KEEP_ALIVE_S,
    max_connections: Annotated[int, typer.Option(
        min=1, help="Connections open at once (a thread each); one more is answered 503 and "
                    "closed.")] = MAX_CONNECTIONS,
    plant: Annotated[list[str] | None, typer.Option(
        metavar="MARKER=OPTION:SHARE",
        help="Answer OPTION to that share of the survey questions whose prompt holds MARKER "
             "(repeatable): a known effect for an arm whose world text carries the marker.")] = None,
) -> None:
    """Serve the offline engine as an OpenAI-compatible endpoint on loopback (for dry runs)."""
    from personahub.models.fake_server.plant import parse_plant
    from personahub.models.fake_server.server import ServerOptions, start_server

    handle = start_server(ServerOptions(seed=seed, latency_s=latency, error_rate=error_rate,
                                        malformed_rate=malformed_rate, stubborn=stubborn,
                                        hang_rate=hang_rate,
                                        hang_s=hang_seconds, runaway_rate=runaway_rate,
                                        bad_usage_rate=bad_usage_rate,
                                        dialect=dialect, fault_seed=fault_seed,
                                        logprobs=logprobs,
                                        retry_after_s=retry_after, models=tuple(model or ()),
                                        batch_delay_s=batch_delay,
                                        batch_error_rate=batch_error_rate,
                                        batch_fail_rate=batch_fail_rate,
                                        batch_expire_rate=batch_expire_rate,
                                        batch_fail=tuple(batch_fail or ()),
                                        batch_expire=tuple(batch_expire or ()),
                                        header_timeout_s=header_timeout, keep_alive_s=keep_alive,
                                        max_connections=max_connections,
                                        plants=tuple(parse_plant(p) for p in plant or ())),
                          host=host, port=port)
    console.print(f"offline engine (not a language model) serving OpenAI-compatible API ({dialect}) at "
                  f"{handle.base_url} — use --llm {handle.base_url}; Ctrl-C stops.", soft_wrap=True)
    serve_until_stopped(handle.stop)


#: this module's commands by path: personahub/cli/app.py registers them
COMMANDS = {("serve",): serve}
