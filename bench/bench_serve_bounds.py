"""``personahub serve`` under the audit's hostile requests: its memory, and what the bounds cost.

Starts ``personahub serve --port 0`` in a child process and reads its resident memory (VmRSS,
and VmHWM, the peak) from /proc after each hostile request of issue 32 (``dimensions: 1e9``,
``minItems: 1e8``, a recursive ``$ref``, a 50,000-deep body, a body over the size bound), then
after ``--requests`` ordinary structured requests. Then times ``models.fake_server.request_bounds`` on the
schemas personahub sends, in process (what every request pays for the bounds).

Run: ``python bench/bench_serve_bounds.py [--requests 500]`` (Linux: reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

MB = 1024 * 1024
USER = {"role": "user", "content": "## Persona\nA potter\n## Task\nGo"}


def memory(pid: int, field: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    return int(found.group(1)) * 1024 / MB if found else float("nan")


def start() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "personahub", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        if found:
            return proc, found.group(1)
    raise SystemExit("serve did not start")


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "S", "schema": schema}}


HOSTILE = [
    ("dimensions 1e9", "embeddings", {"model": "m", "input": "x", "dimensions": 10**9}),
    ("minItems 1e8", "chat/completions", {"model": "m", "messages": [USER], "response_format":
                                          schema_format({"type": "array", "minItems": 10**8})}),
    ("recursive $ref", "chat/completions", {"model": "m", "messages": [USER], "response_format":
                                            schema_format({"$defs": {"a": {"properties": {
                                                "x": {"$ref": "#/$defs/a"}}}},
                                                "$ref": "#/$defs/a"})}),
    ("50,000-deep body", "chat/completions", b"[" * 50_000 + b"]" * 50_000),
    ("n=128 x max_tokens 1e5", "chat/completions", {"model": "m", "messages": [USER], "n": 128,
                                                    "max_tokens": 100_000}),
    ("9 MB body", "chat/completions", b'{"model": "m", "pad": "' + b"x" * (9 * MB) + b'"}'),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="ordinary requests after")
    args = parser.parse_args()
    proc, url = start()
    http = httpx.Client(timeout=120)
    try:
        post = lambda route, body: http.post(  # noqa: E731
            f"{url}/{route}", content=body if isinstance(body, bytes) else json.dumps(body),
            headers={"Content-Type": "application/json"})
        post("chat/completions", {"model": "m", "messages": [USER]})
        print(f"serve at {url}; RSS {memory(proc.pid, 'VmRSS'):.0f} MB after one request")
        print(f"{'request':<26} {'status':>6} {'answer s':>9} {'RSS MB':>7} {'peak MB':>8}")
        for name, route, body in HOSTILE:
            began = time.perf_counter()
            status = post(route, body).status_code
            took = time.perf_counter() - began
            print(f"{name:<26} {status:>6} {took:>9.3f} {memory(proc.pid, 'VmRSS'):>7.0f} "
                  f"{memory(proc.pid, 'VmHWM'):>8.0f}")
        from personahub.tasks.tool_spec import ToolSpec

        spec = schema_format(ToolSpec.model_json_schema())
        began = time.perf_counter()
        for _ in range(args.requests):
            post("chat/completions", {"model": "m", "messages": [USER], "response_format": spec})
        took = time.perf_counter() - began
        print(f"{args.requests} ToolSpec requests: {took / args.requests * 1000:.1f} ms each; RSS "
              f"{memory(proc.pid, 'VmRSS'):.0f} MB, peak {memory(proc.pid, 'VmHWM'):.0f} MB")
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    from personahub.models.fake_server.request_bounds import check_answer, check_body
    from personahub.tasks.tool_spec import ToolSpec

    schema = ToolSpec.model_json_schema()
    body = {"model": "m", "messages": [USER], "response_format": schema_format(schema)}
    rounds = 2_000
    began = time.perf_counter()
    for _ in range(rounds):
        check_body(body)
        check_answer([(schema, "response_format")], 1)
    print(f"bounds on a ToolSpec request, in process: "
          f"{(time.perf_counter() - began) / rounds * 1e6:.0f} µs each")


if __name__ == "__main__":
    main()
