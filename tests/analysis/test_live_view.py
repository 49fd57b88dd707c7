"""The live view's web app offline (Starlette's test client, no socket), its server on a free
loopback port, and how ``view`` and ``run --view`` refuse what they cannot do."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import duckdb
import pytest
from starlette.testclient import TestClient

from personahub.analysis.live_view import RunView, ViewSource, bind, make_app, start_view
from personahub.api import run_simulation
from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.cli_helpers import invoke, one_line_error

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(scope="module")
def launch_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("view") / "launch.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(SCENARIOS / "product_launch.py"), db=db,
                                       steps=3))
    return db, summary.run_id


@pytest.fixture
def client(launch_db):
    db, _ = launch_db
    source = ViewSource(lambda: connect(db, read_only=True))
    with TestClient(make_app(source), base_url="http://127.0.0.1") as c:
        yield c
    source.close()


def test_page_and_assets(client):
    page = client.get("/")
    assert page.status_code == 200 and "personahub" in page.text and "/static/view.js" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from the network
    js = client.get("/static/view.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "fetch(\"http" not in js.text and "cdn" not in js.text.lower()
    assert client.get("/static/view.css").status_code == 200
    assert client.get("/static/../live_view.py").status_code == 404
    assert client.get("/static/index.html").status_code == 404


def test_state_follows_the_newest_run(client, launch_db):
    _, run_id = launch_db
    state = client.get("/api/state").json()
    assert state["run_id"] == run_id
    assert state["run"]["steps_done"] == 3 and state["run"]["status"] == "finished"
    assert [s["step"] for s in state["steps"]] == [1, 2, 3]
    intent = next(s for s in state["surveys"] if s["id"] == "purchase_intent")
    assert sorted(intent["steps"]) == ["1", "3"]
    assert state["stream"] and json.dumps(state)  # all JSON
    assert client.get(f"/api/state?run={run_id}").json()["run_id"] == run_id
    runs = client.get("/api/runs").json()
    assert [r["run_id"] for r in runs["runs"]] == [run_id] and runs["default"] is None


def test_unknown_run_and_graph(client, launch_db):
    missing = client.get("/api/state?run=nope")
    assert missing.status_code == 404 and missing.json()["error"] == "no run nope"
    graph = client.get("/api/graph").json()["graph"]
    assert graph["total_nodes"] == len(graph["nodes"]) > 0 and graph["edges"]


def test_empty_database_waits(tmp_path):
    db = tmp_path / "empty.duckdb"
    connect(db).close()
    source = ViewSource(lambda: connect(db, read_only=True))
    with TestClient(make_app(source), base_url="http://127.0.0.1") as c:
        assert c.get("/api/state").json() == {"run_id": None, "waiting": True, "error": "no run yet"}
    source.close()


def test_in_process_view_sees_committed_rows_only(tmp_path):
    """``run --view``'s source: a second connection in the writer's process shares its instance."""
    db = tmp_path / "w.duckdb"
    writer = connect(db)
    source = ViewSource(lambda: duckdb.connect(str(db)))
    source.open()
    writer.execute("BEGIN")
    writer.execute("INSERT INTO runs (run_id, scenario, steps_planned, steps_done) "
                   "VALUES ('r1', 's', 2, 0)")
    writer.execute("INSERT INTO jobs (job_id, kind, status, started_at) "
                   "VALUES ('r1', 'run', 'running', now())")
    with TestClient(make_app(source), base_url="http://127.0.0.1") as c:
        assert c.get("/api/state").json()["run_id"] is None
        writer.execute("COMMIT")
        state = c.get("/api/state").json()
        assert state["run_id"] == "r1" and state["run"]["calls"] == 0 and state["surveys"] == []
        writer.close()  # the run ends; the view still reads
        assert c.get("/api/state").json()["run"]["status"] == "running"
    source.close()


@pytest.mark.slow  # starts the view's server (uvicorn)
def test_served_on_a_free_loopback_port(launch_db):
    db, run_id = launch_db
    handle = start_view(ViewSource(lambda: connect(db, read_only=True), run_id), port=0)
    try:
        assert handle.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(handle.url + "api/runs", timeout=10) as res:
            assert json.load(res)["default"] == run_id
    finally:
        handle.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(handle.url, timeout=2)


def _get(port: int, path: str, host: str, origin: str | None = None) -> tuple[int, dict]:
    """A GET with exactly these headers (urllib would set Host itself)."""
    extra = f"Origin: {origin}\r\n" if origin else ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close"
                     "\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body or b"{}")


@pytest.mark.parametrize("path", ["/api/runs", "/api/state", "/api/graph", "/"])
@pytest.mark.slow
def test_a_host_or_origin_that_is_not_the_view_gets_a_403(launch_db, path):
    """DNS rebinding: a page whose name re-resolves to 127.0.0.1 read the runs."""
    db, run_id = launch_db
    handle = start_view(ViewSource(lambda: connect(db, read_only=True), run_id), port=0)
    port = int(handle.url.rsplit(":", 1)[1].strip("/"))
    try:
        assert _get(port, path, "evil.example")[0] == 403
        assert _get(port, path, f"evil.example:{port}")[0] == 403
        assert _get(port, path, f"127.0.0.1:{port + 1}")[0] == 403
        assert _get(port, path, f"127.0.0.1:{port}", origin="http://evil.example")[0] == 403
        if path == "/":
            return
        assert _get(port, path, f"127.0.0.1:{port}")[0] == 200
        status, body = _get(port, path, f"localhost:{port}", origin=f"http://localhost:{port}")
        assert status == 200 and (body.get("run_id") == run_id or body.get("default") == run_id)
    finally:
        handle.stop()


def test_a_taken_port_is_refused():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(PersonahubError, match=f"port {port} is already in use"):
            bind(port)
        with pytest.raises(PersonahubError, match="only binds to loopback"):
            bind(0, host="0.0.0.0")
        with pytest.raises(PersonahubError, match="already in use"):
            RunView(Path("x.duckdb"), port, print)
    finally:
        taken.close()


def test_view_command_errors(tmp_path, launch_db):
    db, _ = launch_db
    assert "no such database" in one_line_error(invoke("view", "--db", tmp_path / "none.duckdb"))
    assert "--run nope: no such run" in one_line_error(invoke("view", "--db", db, "--run", "nope",
                                                              "--port", 0))


def test_run_view_refuses_a_taken_port_before_writing(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    db = tmp_path / "never.duckdb"
    port = taken.getsockname()[1]
    try:
        line = one_line_error(invoke("run", SCENARIOS / "product_launch.py", "--db", db, "--view",
                                     "--view-port", port))
    finally:
        taken.close()
    assert "already in use" in line and not db.exists()
    assert line.startswith(f"error: --view-port {port}: "), line  # the flag given


@pytest.mark.slow  # starts a Python process holding the database
def test_view_refuses_a_database_another_process_holds(tmp_path):
    db = tmp_path / "held.duckdb"
    connect(db).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = one_line_error(invoke("view", "--db", db, "--port", 0))
    finally:
        holder.communicate("", timeout=30)
    assert "another process holds it" in line and "run SCENARIO --view" in line
