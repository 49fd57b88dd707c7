"""The live view's web app: a static page and the JSON it polls (Starlette + uvicorn).

A DuckDB file held by a writer cannot be opened by another process, so the run's own process
serves it. The server binds loopback only and refuses foreign Host or Origin headers (DNS
rebinding); the live-control endpoint takes only JSON, which needs a preflight.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from personahub.analysis import live_queries
from personahub.core.errors import PersonahubError
from personahub.core.hosts import host_allowed, origin_allowed
from personahub.sim.live_control import LiveControl, LiveControlError

if TYPE_CHECKING:
    import duckdb
    import uvicorn

STEER_ACTIONS = ("pause", "resume", "step", "inject")

_STATIC = {"view.js": "text/javascript; charset=utf-8", "view.css": "text/css; charset=utf-8",
           "experiment.js": "text/javascript; charset=utf-8"}


class ViewSource:
    """Cursors over one open connection, one per request, and the run shown by default."""

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection], run_id: str | None = None) -> None:
        self._connect = connect
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self.run_id = run_id

    def open(self) -> None:
        """Open the connection now, while the runner holds the file."""
        with self._lock:
            if self._con is None:
                self._con = self._connect()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        self.open()
        with self._lock:
            assert self._con is not None
            return self._con.cursor()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


class ExperimentFeed:
    """An experiment's arms side by side, read on each request."""

    def __init__(self, source: ViewSource, experiment_id: str) -> None:
        self.source = source
        self.experiment_id = experiment_id

    def state(self, experiment_id: str) -> dict[str, object] | None:
        """Return the experiment's state; None when it has no finished run."""
        cursor = self.source.cursor()
        try:
            return live_queries.experiment_state(cursor, experiment_id)
        finally:
            cursor.close()


class ExperimentSnapshots(ExperimentFeed):
    """An experiment's state, read between runs (each holds the database in turn) and served from that copy.
    """

    def __init__(self, db: Path, experiment_id: str, arms: list[str],
                 replicates_planned: int) -> None:
        self.db = db
        self.experiment_id = experiment_id
        self.replicates_planned = replicates_planned
        self._lock = threading.Lock()
        self._state: dict[str, object] = {
            "experiment_id": experiment_id, "waiting": True, "design": None,
            "arms": [{"name": a, "control": i == 0, "replicates_done": 0, "runs": []}
                     for i, a in enumerate(arms)],
            "replicates_planned": replicates_planned, "outcomes": [], "not_over_steps": []}

    def refresh(self) -> None:
        """Read the experiment's state again; call it while no run holds the database."""
        from personahub.core.store import connect

        con = connect(self.db, read_only=True)
        try:
            found = live_queries.experiment_state(con, self.experiment_id,
                                                  self.replicates_planned)
        finally:
            con.close()
        if found is not None:
            with self._lock:
                self._state = found

    def state(self, experiment_id: str) -> dict[str, object] | None:
        with self._lock:
            return dict(self._state) if experiment_id == self.experiment_id else None


class HostGuard:
    """ASGI middleware: 403 for a Host that does not name the server or a foreign Origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers") or ()}
            bound_host, port = scope.get("server") or ("127.0.0.1", 0)
            host, origin = headers.get("host"), headers.get("origin")
            if not host_allowed(host, bound_host, port):
                answer = JSONResponse({"error": f"Host {host!r} does not name this server"},
                                      status_code=403)
                await answer(scope, receive, send)
                return
            if not origin_allowed(origin, bound_host, port):
                answer = JSONResponse({"error": f"cross-origin requests are refused (Origin "
                                                f"{origin!r})"}, status_code=403)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def make_app(source: ViewSource | None, live_control: LiveControl | None = None,
             experiments: ExperimentFeed | None = None) -> Starlette:
    """Build the page, its assets and the JSON endpoints (runs, state, graph, steer, experiment).

    Without a live control the view only watches; without a source the run endpoints answer 409.
    """
    if experiments is None and source is not None:
        experiments = ExperimentFeed(source, "")
    no_runs = JSONResponse({"error": "this view watches an experiment; see its runs with "
                                     "personahub view --db once it is over"}, status_code=409)

    def read(request: Request,
             what: Callable[[duckdb.DuckDBPyConnection, str], dict[str, object]]) -> Response:
        if source is None:
            return no_runs
        cursor = source.cursor()
        try:
            run_id = live_queries.resolve_run(cursor, request.query_params.get("run") or source.run_id)
            if run_id is None:
                asked = request.query_params.get("run")
                return JSONResponse({"run_id": None, "waiting": True,
                                     "error": f"no run {asked}" if asked else "no run yet"},
                                    status_code=404 if asked else 200)
            found = what(cursor, run_id)
            if live_control is not None and run_id == source.run_id:
                found["steering"] = live_control.status()
            return JSONResponse({"run_id": run_id, **found})
        finally:
            cursor.close()

    def page(request: Request) -> Response:
        return HTMLResponse(_asset("index.html"))

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return Response("not found", status_code=404)
        return Response(_asset(name), media_type=_STATIC[name],
                        headers={"Cache-Control": "no-cache"})

    def runs(request: Request) -> Response:
        if source is None:
            return no_runs
        cursor = source.cursor()
        try:
            return JSONResponse({"runs": live_queries.list_runs(cursor), "default": source.run_id})
        finally:
            cursor.close()

    def state(request: Request) -> Response:
        return read(request, live_queries.state)

    def graph(request: Request) -> Response:
        return read(request, lambda con, run_id: {"graph": live_queries.graph(con, run_id)})

    async def steer(request: Request) -> Response:
        return await steer_request(request, live_control)

    def experiment_page(request: Request) -> Response:
        return HTMLResponse(_asset("experiment.html"))

    def experiment(request: Request) -> Response:
        wanted = request.query_params.get("id") or (experiments.experiment_id if experiments
                                                    else "")
        if not wanted or experiments is None:
            return JSONResponse({"error": "give the experiment as ?id=ID"}, status_code=400)
        try:
            found = experiments.state(wanted)
        except PersonahubError as exc:  # its scenario file is gone or changed
            return JSONResponse({"experiment_id": wanted, "error": str(exc)}, status_code=409)
        if found is None:
            return JSONResponse({"experiment_id": wanted, "error": f"no experiment {wanted}"},
                                status_code=404)
        return JSONResponse(found)

    return Starlette(routes=[
        Route("/", page), Route("/static/{name}", static), Route("/api/runs", runs),
        Route("/api/state", state), Route("/api/graph", graph),
        Route("/api/steer", steer, methods=["GET", "POST"]),
        Route("/experiment", experiment_page), Route("/api/experiment", experiment)],
        middleware=[Middleware(HostGuard)])


async def steer_request(request: Request, live_control: LiveControl | None) -> Response:
    """GET the live-control state, POST one action; 400/409/415 with a one-line error."""
    if live_control is None:
        return JSONResponse({"error": "this view only watches: steer a run from the view of "
                                      "personahub run --view"}, status_code=409)
    if request.method == "GET":
        return JSONResponse(live_control.status())
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSONResponse({"error": "send the request as application/json"}, status_code=415)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
    action = body.get("action") if isinstance(body, dict) else None
    if action not in STEER_ACTIONS:
        return JSONResponse({"error": f"action must be one of {', '.join(STEER_ACTIONS)}, got "
                                      f"{action!r}"}, status_code=400)
    try:
        if action == "inject":
            live_control.inject(body.get("text"))  # its type is checked there
        else:
            getattr(live_control, action)()
    except LiveControlError as exc:
        over = live_control.status()["over"]
        return JSONResponse({"error": str(exc)}, status_code=409 if over else 400)
    return JSONResponse(live_control.status())


def _asset(name: str) -> str:
    return resources.files("personahub.analysis").joinpath("view", name).read_text(encoding="utf-8")


@dataclass
class RunningView:
    """A view being served: its address, and how to stop it."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread
    source: ViewSource | None

    def stop(self) -> None:
        """Stop serving and close the view's connection."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.source is not None:
            self.source.close()


def bind(port: int = 0, host: str = "127.0.0.1", flag: str = "--port") -> socket.socket:
    """Bind a listening loopback socket (port 0: a free one) before a run starts, so a taken port
    fails before anything is written.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise PersonahubError(f"--host {host!r}: the view only binds to loopback")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PersonahubError(f"{flag} {port}: {host} port {port} is already in use; choose "
                                  "another (0 picks a free one)") from None
        raise PersonahubError(f"{flag} {port}: cannot listen on {host} ({exc.strerror or exc})") from None
    sock.listen(64)
    return sock


def start_view(source: ViewSource | None, port: int = 0, host: str = "127.0.0.1",
               sock: socket.socket | None = None, live_control: LiveControl | None = None,
               experiments: ExperimentFeed | None = None) -> RunningView:
    """Serve the view in a daemon thread on the socket, else on a new loopback socket."""
    import uvicorn

    sock = sock or bind(port, host)
    address = sock.getsockname()
    config = uvicorn.Config(make_app(source, live_control, experiments), log_level="warning",
                            lifespan="off", access_log=False,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="personahub-view",
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    netloc = f"[{address[0]}]" if sock.family == socket.AF_INET6 else address[0]
    return RunningView(f"http://{netloc}:{address[1]}/", server, thread, source)


def _serve_until_interrupted(say: Callable[[str], None], what: str,
                             stop: Callable[[], None]) -> None:
    say(f"{what}; the view stays up until Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stop()


class RunView:
    """A run's view: the port is taken at once, serving starts once the runner holds the database and
    lasts until interrupted.
    """

    def __init__(self, db: Path, port: int, say: Callable[[str], None], *,
                 paused: bool = False) -> None:
        self.db = db
        self.say = say
        self.sock: socket.socket | None = bind(port, flag="--view-port")
        self.handle: RunningView | None = None
        self.live_control = LiveControl(paused=paused)

    def start(self, run_id: str) -> None:
        """Start serving a run; call it while the runner's connection is open."""
        import duckdb

        if self.handle is not None or self.sock is None:
            return
        source = ViewSource(lambda: duckdb.connect(str(self.db)), run_id)
        source.open()  # while the runner holds the file: same instance, same settings
        self.handle, self.sock = start_view(source, sock=self.sock, live_control=self.live_control), None
        paused = " — paused before step 1: press Resume or Step" if self.live_control.status()["paused"] \
            else ""
        self.say(f"view: {self.handle.url} (follows run {run_id}; pause, step and inject events "
                 f"there){paused}")

    def linger(self) -> None:
        """Serve the finished run until Ctrl-C or SIGTERM."""
        self.live_control.finish()
        if self.handle is None:
            return
        _serve_until_interrupted(self.say, "the run is over", self.stop)

    def stop(self) -> None:
        """Stop serving, or give the reserved port back."""
        self.live_control.finish()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.handle is not None:
            self.handle.stop()
            self.handle = None


class ExperimentView:
    """An experiment's view: served at once, refreshed as each run lands, kept up until interrupted."""

    def __init__(self, db: Path, port: int, say: Callable[[str], None], *, experiment_id: str,
                 arms: list[str], replicates: int) -> None:
        self.say = say
        self.feed = ExperimentSnapshots(db, experiment_id, arms, replicates)
        if Path(db).exists():  # runs of an earlier, stopped try are shown from the start
            self.feed.refresh()
        self.handle: RunningView | None = start_view(
            None, sock=bind(port, flag="--view-port"), experiments=self.feed)
        self.url = f"{self.handle.url}experiment?id={quote(experiment_id)}"
        self.say(f"view: {self.url} (the arms side by side, as their runs land)")

    def landed(self) -> None:
        """Read the experiment again: a run finished and the database is free."""
        self.feed.refresh()

    def linger(self) -> None:
        """Serve until Ctrl-C or SIGTERM."""
        if self.handle is None:
            return
        _serve_until_interrupted(self.say, "the experiment is over", self.stop)

    def stop(self) -> None:
        """Stop serving."""
        if self.handle is not None:
            self.handle.stop()
            self.handle = None
