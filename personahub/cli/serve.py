"""``personahub serve``: the offline engine as an OpenAI-compatible endpoint on loopback."""

from __future__ import annotations

from typing import Annotated

import typer

from personahub.cli.common import console, one_line_errors


@one_line_errors
def serve(
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8000,
    host: Annotated[str, typer.Option(help="Loopback address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Offline engine seed.")] = 0,
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
    dialect: Annotated[str, typer.Option(
        help="Answer as: openai, openai-strict, vllm, vllm-legacy, llama-cpp-python, ollama, "
             "tools-only.")] = "openai",
    retry_after: Annotated[float | None, typer.Option(
        min=0, help="Seconds sent as Retry-After on 429/503 answers.")] = None,
    model: Annotated[list[str] | None, typer.Option(
        help="Model name to serve (repeatable); /v1/models lists them and other names get a 404 "
             "model_not_found. Default: any name is answered.")] = None,
) -> None:
    """Serve the offline engine as an OpenAI-compatible endpoint on loopback (for dry runs)."""
    import time

    from personahub.agents.loopback.server import ServerOptions, start_server

    handle = start_server(ServerOptions(seed=seed, latency_s=latency, error_rate=error_rate,
                                        malformed_rate=malformed_rate, stubborn=stubborn,
                                        hang_rate=hang_rate,
                                        hang_s=hang_seconds, runaway_rate=runaway_rate,
                                        dialect=dialect,
                                        retry_after_s=retry_after, models=tuple(model or ())),
                          host=host, port=port)
    console.print(f"offline engine (not a language model) serving OpenAI-compatible API ({dialect}) at "
                  f"{handle.base_url} — use --llm {handle.base_url}; Ctrl-C stops.", soft_wrap=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        handle.stop()
