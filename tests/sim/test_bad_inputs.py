"""Every bad input is answered in one line.

One table: each row builds its bad input (files, a database), runs the CLI on it and expects
exactly one non-empty stderr line starting with ``error:`` that holds the row's fragment, the
row's non-zero exit code, no traceback, and no half-written data: the named tables of ``--db``
hold the same rows as before (a database that did not exist still does not), and the named
files (a damaged database among them) keep their bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from personahub.api import run_simulation
from personahub.cli.app import app
from personahub.models.fake_server.server import running_server, start_server
from personahub.pipelines.run import RunConfig
from personahub.sim.scenario import load_scenario
from tests.conftest import persona_texts

HUB = ("personas", "relations")
RUN = (*HUB, "runs", "run_agents", "run_edges", "expansions", "steps", "emissions", "llm_calls",
       "llm_cache")
SYNTH = ("personas", "synth_jobs", "synth_items", "synth_job_personas", "llm_calls")
TEXT = ("personas", "relations", "text_jobs", "text_done", "rejected", "llm_calls")
ROOT = Path(__file__).resolve().parents[2]
HEADERS = 3 * 4096  # DuckDB's main and database headers precede the first block


@dataclass
class Ctx:
    """What a row's setup works with; ``values`` fill the ``{...}`` fields of its arguments."""

    tmp: Path
    template: Path
    stack: contextlib.ExitStack
    values: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> Path:
        return self.tmp / "hub.duckdb"

    def write(self, name: str, text: str) -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def hub(self) -> Path:
        """A copy of a database holding personas and one finished run."""
        shutil.copyfile(self.template, self.db)
        return self.db


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Ctx], Any]
    args: tuple[str, ...]
    fragment: str
    exit_code: int = 1
    tables: tuple[str, ...] = ()  # tables of {db} whose rows must not change
    untouched: tuple[str, ...] = ()  # files (under tmp) whose bytes must not change
    invoke: Callable[[Ctx], tuple[int, str]] | None = None  # (exit code, stderr) another way
    absent: tuple[str, ...] = ()  # paths (under tmp) the command must not create


# --------------------------------------------------------------------------- setups


def scenario(ctx: Ctx, name: str = "scenario.py", *, steps: float = 2, hops: int = 0,
             extra: str = "", personas: str = "people.jsonl", seed: int | None = 3) -> Path:
    """A scenario over the 12 personas of ``people.jsonl`` with ``extra`` Scenario fields
    (``seed=None`` leaves the seed to ``extra``)."""
    seed_line = f"seed={seed}," if seed is not None else ""
    return ctx.write(name, textwrap.dedent(f"""\
        from personahub.sim.scenario import (Activation, Audience, Event, GraphGrowth, Intervention,
                                  PersonaSource, Scenario, Survey)

        SCENARIO = Scenario(
            name="bad_input",
            personas=PersonaSource(path={personas!r}),
            graph=GraphGrowth(hops={hops}, fanout=1, acquaintances=2),
            steps={steps},
            {seed_line}
            {extra}
        )
        """))


def people(ctx: Ctx) -> None:
    ctx.write("people.jsonl", "".join(json.dumps({"persona": t}) + "\n" for t in persona_texts(12)))


def hub_and_people(ctx: Ctx) -> None:
    ctx.hub()
    people(ctx)


def recorded_offline(ctx: Ctx) -> None:
    """The hub, a scenario, and the offline engine's answers recorded in ``llm_cache``."""
    hub_and_people(ctx)
    path = scenario(ctx, steps=1)
    done = CliRunner().invoke(app, ["run", str(path), "--db", str(ctx.db), "--cache", "record"])
    assert done.exit_code == 0, done.output


def hub_and(*files: tuple[str, str | bytes]) -> Callable[[Ctx], None]:
    """Setup: the hub copy, people.jsonl and these (name, content) files."""
    def setup(ctx: Ctx) -> None:
        hub_and_people(ctx)
        for name, content in files:
            path = ctx.tmp / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
    return setup


def hub_and_scenario_and(*files: tuple[str, bytes], **kwargs: Any) -> Callable[[Ctx], None]:
    """Setup: the hub copy, people.jsonl, a scenario (``scenario`` kwargs) and these files."""
    def setup(ctx: Ctx) -> None:
        hub_and_people(ctx)
        scenario(ctx, **kwargs)
        for name, content in files:
            (ctx.tmp / name).write_bytes(content)
    return setup


def hub_and_scenario(**kwargs: Any) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        hub_and_people(ctx)
        scenario(ctx, **kwargs)
    return setup


def truncated_gz(ctx: Ctx) -> None:
    ctx.hub()
    data = gzip.compress("".join(json.dumps({"persona": t}) + "\n"
                                 for t in persona_texts(400)).encode())
    (ctx.tmp / "trunc.jsonl.gz").write_bytes(data[: len(data) // 2])


def db_bytes(content: bytes) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        people(ctx)
        ctx.db.write_bytes(content)
    return setup


def foreign_db(ddl: str) -> Callable[[Ctx], None]:
    """A DuckDB file made by another program (and people.jsonl, scenario.py to feed it)."""
    def setup(ctx: Ctx) -> None:
        people(ctx)
        scenario(ctx)
        con = duckdb.connect(str(ctx.db))
        con.execute(ddl)
        con.close()
    return setup


def flip(path: Path, offset: int, length: int = 2000) -> None:
    """Damage ``length`` bytes from ``offset`` (every 7th byte inverted)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        data = bytearray(f.read(length))
        for i in range(0, len(data), 7):
            data[i] ^= 0xFF
        f.seek(offset)
        f.write(data)


def damaged_block(which: str) -> Callable[[Ctx], None]:
    """The hub copy with one block damaged: the personas table's data, or the file's last block
    (not a table's data: an index or metadata block, which an insert need not read)."""
    def setup(ctx: Ctx) -> None:
        people(ctx)
        ctx.write("new.jsonl", json.dumps({"persona": "A ferry pilot from Cork who paints."}) + "\n")
        db = ctx.hub()
        con = duckdb.connect(str(db), read_only=True)
        size = con.execute("SELECT block_size, total_blocks FROM pragma_database_size()").fetchone()
        data = con.execute("SELECT min(block_id) FROM pragma_storage_info('personas') "
                           "WHERE block_id >= 0").fetchone()[0]
        con.close()
        block = data if which == "data" else size[1] - 1
        flip(db, HEADERS + block * size[0] + 64)
    return setup


def truncated_in(table: str) -> Callable[[Ctx], None]:
    """The hub copy cut off inside the first data block of ``table`` (a file a full disk or an
    interrupted copy left short): the header and catalog still read, the table does not."""
    def setup(ctx: Ctx) -> None:
        db = ctx.hub()
        con = duckdb.connect(str(db), read_only=True)
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        data = con.execute(f"SELECT min(block_id) FROM pragma_storage_info('{table}') "
                           "WHERE block_id >= 0").fetchone()[0]
        con.close()
        with open(db, "r+b") as f:
            f.truncate(HEADERS + data * block_size + 1000)
    return setup


def listening_port(ctx: Ctx) -> None:
    """A port something already listens on."""
    sock = ctx.stack.enter_context(socket.socket())
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    ctx.values["port"] = str(sock.getsockname()[1])


def refused_port(ctx: Ctx) -> None:
    """The hub, people.jsonl, a scenario and a port nothing listens on (connections refused)."""
    hub_and_people(ctx)
    scenario(ctx)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        ctx.values["port"] = str(sock.getsockname()[1])


def report_onto_file(ctx: Ctx) -> None:
    ctx.hub()
    ctx.write("afile", "keep me\n")


def export_into_folder(ctx: Ctx) -> None:
    ctx.hub()
    (ctx.tmp / "outdir").mkdir()


def folder(name: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        people(ctx)
        (ctx.tmp / name).mkdir()
    return setup


def nothing(ctx: Ctx) -> None:
    people(ctx)


def post_list_body(ctx: Ctx) -> tuple[int, str]:
    """POST a JSON list to the loopback server: its status stands for the exit code and its
    JSON error message for the error line."""
    with running_server() as server:
        reply = httpx.post(f"{server.base_url}/chat/completions", content=b"[1,2,3]",
                           headers={"Content-Type": "application/json"}, timeout=10)
    return reply.status_code, "error: " + reply.json()["error"]["message"]


def post_bad_length(ctx: Ctx) -> tuple[int, str]:
    """A Content-Length that is not a number (sent raw: HTTP clients refuse to)."""
    with running_server() as server:
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: "
                         b"application/json\r\nContent-Length: nope\r\n\r\n{}" % port)
            answer = b""
            while chunk := sock.recv(65536):  # the server closes the connection after answering
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), "error: " + json.loads(body)["error"]["message"]


def header_only_gz(ctx: Ctx) -> None:
    """A gzip file cut inside its first bytes (what "error: aborted" answered)."""
    ctx.hub()
    data = gzip.compress(b'{"persona": "A ferry pilot from Cork."}\n')
    (ctx.tmp / "cut.jsonl.gz").write_bytes(data[:12])


def fifo(ctx: Ctx) -> None:
    ctx.hub()
    os.mkfifo(ctx.tmp / "pipe")


def held_lock(ctx: Ctx) -> tuple[int, str]:
    """Another process holds the database open for writing while an import runs."""
    hold = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; "
                             f"c = duckdb.connect({str(ctx.db)!r}); print('held', flush=True); "
                             "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "held"
        result = CliRunner().invoke(app, ["personas", "import", str(ctx.tmp / "people.jsonl"),
                                          "--db", str(ctx.db)])
    finally:
        hold.communicate("", timeout=60)
    return result.exit_code, result.stderr


def corpus(name: str, content: bytes) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.hub()
        (ctx.tmp / name).write_bytes(content)
    return setup


ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"libc.so.6\x00GLIBC_2.2.5\x00" * 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
SURVEY = "surveys=(Survey(id='q', question='Q?', steps=(1,), options=('a', 'b'), audience={}),)"

CASES = [
    # persona files
    Case("csv with an unclosed quote", hub_and(("bad.csv", 'text\n"A nurse from Lisbon\nA baker '
                                                           'from Leeds\n')),
         ("personas", "import", "{tmp}/bad.csv", "--db", "{db}"),
         "bad.csv:2: bad quoting: a quote opened here is never closed", tables=HUB),
    Case("csv with a stray quote merging rows",
         hub_and(("bad.csv", 'text,age\nA nurse,30\n"A baker,40\nA welder,50\n'
                             'A florist "the best",60\n')),
         ("personas", "import", "{tmp}/bad.csv", "--db", "{db}"),
         "bad.csv:3: bad quoting", tables=HUB),
    Case("csv row with a missing field", hub_and(("bad.csv", "text,age\nA nurse,30\nA baker\n")),
         ("personas", "import", "{tmp}/bad.csv", "--db", "{db}"),
         "bad.csv:3: expected 2 fields, got 1", tables=HUB),
    Case("truncated jsonl.gz", truncated_gz,
         ("personas", "import", "{tmp}/trunc.jsonl.gz", "--db", "{db}"),
         "trunc.jsonl.gz: unreadable data", tables=HUB),
    Case("jsonl line that is not JSON",
         hub_and(("bad.jsonl", '{"persona": "A nurse from Lisbon."}\n{"persona": \n')),
         ("personas", "import", "{tmp}/bad.jsonl", "--db", "{db}"), "bad.jsonl:2:", tables=HUB),
    Case("binary file named .jsonl", hub_and(("pic.jsonl", PNG)),
         ("personas", "import", "{tmp}/pic.jsonl", "--db", "{db}"),
         "pic.jsonl:1: not valid UTF-8", tables=HUB),
    Case("empty persona file", hub_and(("empty.jsonl", "")),
         ("personas", "import", "{tmp}/empty.jsonl", "--db", "{db}"),
         "empty.jsonl: no persona records", tables=HUB),
    Case("--format naming another file type, no database yet", nothing,
         ("personas", "import", "{tmp}/people.jsonl", "--db", "{db}", "--format", "parquet"),
         "people.jsonl: not a readable Parquet file"),
    Case("missing persona file", hub_and_people,
         ("personas", "import", "{tmp}/missing.jsonl", "--db", "{db}"),
         "missing.jsonl: file not found", tables=HUB),
    Case("unknown extension", hub_and(("notes.txt", "A nurse.\n")),
         ("personas", "import", "{tmp}/notes.txt", "--db", "{db}"),
         "notes.txt: cannot tell the format from the extension; give --format", exit_code=2,
         tables=HUB),
    Case("unknown --format", hub_and_people,
         ("personas", "import", "{tmp}/people.jsonl", "--db", "{db}", "--format", "bogus"),
         "--format 'bogus'", exit_code=2, tables=HUB),
    # databases
    Case("--db is a folder", folder("hub.duckdb"),
         ("personas", "import", "{tmp}/people.jsonl", "--db", "{db}"), "is a folder"),
    Case("--db of random bytes", db_bytes(bytes(range(256)) * 100),
         ("personas", "import", "{tmp}/people.jsonl", "--db", "{db}"),
         "not a DuckDB database file", untouched=("hub.duckdb",)),
    Case("--db an empty file", db_bytes(b""),
         ("personas", "import", "{tmp}/people.jsonl", "--db", "{db}"),
         "the file is empty", untouched=("hub.duckdb",)),
    Case("--db with a foreign personas table", foreign_db(
        "CREATE TABLE personas (a INTEGER, b INTEGER); INSERT INTO personas VALUES (1, 2)"),
         ("personas", "import", "{tmp}/people.jsonl", "--db", "{db}"),
         "not a personahub database, or one damaged: its table personas lacks",
         untouched=("hub.duckdb",)),
    Case("--db of another program", foreign_db("CREATE TABLE sales (id INTEGER)"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "not a personahub database (it holds other tables: sales)",
         untouched=("hub.duckdb",)),
    Case("--db with a damaged data block", damaged_block("data"),
         ("personas", "import", "{tmp}/new.jsonl", "--db", "{db}"),
         "the database file is damaged", untouched=("hub.duckdb",)),
    Case("--db with a damaged last block", damaged_block("last"),
         ("personas", "import", "{tmp}/new.jsonl", "--db", "{db}"),
         "the database file is damaged", untouched=("hub.duckdb",)),
    Case("personas stats on a truncated database", truncated_in("personas"),
         ("personas", "stats", "--db", "{db}"), "--db {db}: the database file is damaged",
         untouched=("hub.duckdb",)),
    Case("report on a truncated database", truncated_in("emissions"),
         ("report", "--db", "{db}", "--out", "{tmp}/rep"),
         "--db {db}: the database file is damaged", untouched=("hub.duckdb",)),
    Case("sql on a missing database", nothing, ("sql", "--db", "{db}", "select 1"),
         "no such database"),
    Case("sql on random bytes", db_bytes(b"not a database at all" * 100),
         ("sql", "--db", "{db}", "select 1"), "not a DuckDB database file",
         untouched=("hub.duckdb",)),
    # scenario files
    Case("scenario with a syntax error", hub_and(("broken.py", "x = 1\n\ndef f(:\n")),
         ("run", "{tmp}/broken.py", "--db", "{db}"), "broken.py:3: syntax error", tables=RUN),
    Case("scenario with NUL bytes", hub_and(("nul.py", b"x = 1\n\ny = 2\0\0\n")),
         ("run", "{tmp}/nul.py", "--db", "{db}"),
         "nul.py:3: not a Python file (a NUL byte at line 3, column 6)", tables=RUN),
    Case("scenario without SCENARIO", hub_and(("empty.py", "x = 1\n")),
         ("run", "{tmp}/empty.py", "--db", "{db}"), "defines no SCENARIO", tables=RUN),
    Case("scenario calling sys.exit", hub_and(("exits.py", "import sys\nsys.exit(3)\n")),
         ("run", "{tmp}/exits.py", "--db", "{db}"), "exits.py:2: scenario called sys.exit(3)",
         tables=RUN),
    Case("scenario raising KeyboardInterrupt", hub_and(("kbd.py", "raise KeyboardInterrupt\n")),
         ("run", "{tmp}/kbd.py", "--db", "{db}"), "kbd.py:1: scenario raised KeyboardInterrupt",
         tables=RUN),
    Case("scenario raising a BaseException",
         hub_and(("boom.py", "class Boom(BaseException):\n    pass\n\nraise Boom('boom')\n")),
         ("run", "{tmp}/boom.py", "--db", "{db}"), "boom.py:4: scenario raised Boom: boom",
         tables=RUN),
    Case("scenario raising ValueError",
         hub_and(("raises.py", "import os\nraise ValueError('bad world')\n")),
         ("run", "{tmp}/raises.py", "--db", "{db}"), "raises.py:2: scenario raised ValueError",
         tables=RUN),
    Case("missing scenario file", hub_and_people, ("run", "{tmp}/nope.py", "--db", "{db}"),
         "scenario file not found", tables=RUN),
    Case("scenario path is a folder", folder("scenarios"),
         ("run", "{tmp}/scenarios", "--db", "{db}"), "is a folder, not a scenario file"),
    Case("scenario with a bad field", hub_and_scenario(steps=0),
         ("run", "{tmp}/scenario.py", "--db", "{db}"), "scenario.steps must be an integer within 1..10000",
         exit_code=2, tables=RUN),
    Case("event after the last step",
         hub_and_scenario(extra="events=(Event(step=5, text='Late news.'),),"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "scheduled at step 5, after the last step (steps=2)", exit_code=2, tables=RUN),
    Case("survey audience naming an unknown group",
         hub_and_scenario(hops=1, extra=SURVEY.format("Audience(personas=('engineers',))")),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "survey 'q': audience.personas names 'engineers'", exit_code=2, tables=RUN),
    Case("survey audience naming an unknown attribute",
         hub_and_scenario(hops=1, extra=SURVEY.format("Audience(attributes={'group': 'x'})")),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "audience.attributes names 'group'", exit_code=2, tables=RUN),
    Case("intervention naming a persona not in the run",
         hub_and_scenario(hops=1, extra="interventions=(Intervention(step=1, action='forget', "
                                        "target='pnobody'),),"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "intervention at step 1: target names 'pnobody'", exit_code=2, tables=RUN),
    Case("intervention naming an agent id beyond the personas",
         hub_and_scenario(hops=1, extra="interventions=(Intervention(step=2, action='add_edge', "
                                        "target=1, other=99),),"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "intervention at step 2: other names 99", exit_code=2, tables=RUN),
    Case("missing world file", hub_and_scenario(extra="world_file='worlds/none.md',"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"), "world_file", tables=RUN),
    Case("scenario persona file missing", hub_and_scenario(personas="gone.jsonl"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"), "gone.jsonl: file not found", tables=RUN),
    # run flags and endpoints
    Case("--cache replay with nothing recorded", hub_and_scenario(hops=1),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--cache", "replay"),
         "holds no recorded answer of model 'offline'", tables=RUN),
    Case("--cache replay with another --llm", recorded_offline,
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--cache", "replay",
          "--llm", "http://127.0.0.1:9/v1?model=other"),
         "use the same --llm they were recorded with", tables=RUN),
    Case("--cache replay without a database", hub_and_scenario(hops=1),
         ("run", "{tmp}/scenario.py", "--db", "{tmp}/none.duckdb", "--cache", "replay"),
         "does not exist, so no answer is recorded", tables=RUN),
    Case("--cache bogus", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--cache", "bogus"), "--cache 'bogus'",
         exit_code=2, tables=RUN),
    Case("bad --llm spec", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--llm", "bogus"),
         "--llm 'bogus' is not understood", exit_code=2, tables=RUN),
    Case("endpoint refusing connections", refused_port,
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--llm", "http://127.0.0.1:{port}/v1"),
         "unreachable", tables=RUN),
    Case("unknown flag", hub_and_scenario(), ("run", "{tmp}/scenario.py", "--nosuchflag"),
         "No such option: --nosuchflag (see personahub run --help)", exit_code=2, tables=RUN),
    Case("bad flag value", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--steps", "0"),
         "Invalid value for '--steps'", exit_code=2, tables=RUN),
    Case("unknown command", nothing, ("bogus",), "No such command 'bogus'", exit_code=2),
    Case("missing argument", nothing, ("personas", "import"),
         "Missing argument 'file' (see personahub personas import --help)", exit_code=2),
    Case("--resume with a scenario", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--resume", "x"),
         "--resume RUN_ID takes the scenario", exit_code=2, tables=RUN),
    Case("--resume of an unknown run", hub_and_people, ("run", "--resume", "nosuch", "--db", "{db}"),
         "--resume nosuch: no such run", tables=RUN),
    # other commands
    Case("personas sample -w with a doubled operator", lambda ctx: ctx.hub(),
         ("personas", "sample", "--db", "{db}", "-w", "age>>3"),
         "--where 'age>>3': the value starts with '>'", exit_code=2, tables=HUB),
    Case("personas sample --near an unknown id", lambda ctx: ctx.hub(),
         ("personas", "sample", "--db", "{db}", "--near", "nosuch"),
         "--near 'nosuch': no such persona id", tables=HUB),
    # other commands
    Case("export --task bogus", lambda ctx: ctx.hub(),
         ("export", "--db", "{db}", "--run", "{run}", "--task", "bogus", "--out", "{tmp}/x.jsonl"),
         "--task 'bogus': run", tables=RUN),
    Case("export --out a folder", export_into_folder,
         ("export", "--db", "{db}", "--run", "{run}", "--out", "{tmp}/outdir"),
         "is a folder; give a file name", exit_code=2, tables=RUN),
    Case("export --format bogus", lambda ctx: ctx.hub(),
         ("export", "--db", "{db}", "--run", "{run}", "--format", "bogus", "--out", "{tmp}/x.x"),
         "--format 'bogus'", exit_code=2, tables=RUN),
    Case("export of an unknown run", lambda ctx: ctx.hub(),
         ("export", "--db", "{db}", "--run", "nosuch", "--out", "{tmp}/x.jsonl"),
         "--run nosuch: not found", tables=RUN),
    Case("report --out a file", report_onto_file, ("report", "--db", "{db}", "--out", "{tmp}/afile"),
         "is a file; give a folder", exit_code=2, tables=RUN, untouched=("afile",)),
    Case("personas expand without a database", nothing, ("personas", "expand", "--db", "{db}"),
         "no such database"),
    Case("synthesize an unknown task", lambda ctx: ctx.hub(),
         ("synthesize", "bogus", "--db", "{db}"), "task 'bogus'", exit_code=2, tables=SYNTH),
    Case("synthesize with a broken --personas condition", lambda ctx: ctx.hub(),
         ("synthesize", "instruction", "--db", "{db}", "--personas", "text ILIKE ("),
         "--personas 'text ILIKE ('", tables=SYNTH),
    # the loopback server
    Case("serve on a busy port", listening_port, ("serve", "--port", "{port}"),
         "already in use; choose another --port"),
    Case("serve on a non-loopback host", nothing, ("serve", "--host", "0.0.0.0", "--port", "0"),
         "--host '0.0.0.0': the offline server only binds to loopback", exit_code=2),
    Case("POST a JSON list to the server", nothing, (), "the body is a JSON list, not an object",
         exit_code=400, invoke=post_list_body),
    Case("POST with a bad Content-Length", nothing, (), "Content-Length", exit_code=400,
         invoke=post_bad_length),
    # Bad input answered at once, in one line, before anything is recorded
    Case("world_file that is binary", hub_and_scenario_and(("bin.md", ELF), name="world.py",
                                                           extra="world_file='bin.md',"),
         ("run", "{tmp}/world.py", "--db", "{db}"),
         "world_file {tmp}/bin.md: is a binary file (a NUL byte at byte 7), not text", tables=RUN),
    Case("--world that is binary", hub_and(("bin.md", ELF)),
         ("synthesize", "npc", "--n", "2", "--world", "{tmp}/bin.md", "--db", "{db}"),
         "--world {tmp}/bin.md: is a binary file", tables=SYNTH),
    Case("--world in Latin-1", hub_and(("lore.md", "Le village.\nCafé ouvert.\n".encode("latin-1"))),
         ("synthesize", "npc", "--n", "2", "--world", "{tmp}/lore.md", "--db", "{db}"),
         "--world {tmp}/lore.md: line 2: not UTF-8 text", tables=SYNTH),
    Case("--examples that is binary", hub_and(("demos.jsonl", PNG)),
         ("synthesize", "instruction", "--n", "2", "--prompting", "few-shot",
          "--examples", "{tmp}/demos.jsonl", "--db", "{db}"),
         "--examples {tmp}/demos.jsonl: is a binary file", tables=SYNTH),
    Case("a .sql file that is not UTF-8", hub_and(("q.sql", b"select 1; -- \xff\xfe caf\xe9\n")),
         ("sql", "--db", "{db}", "{tmp}/q.sql"), "--file {tmp}/q.sql: line 1: not UTF-8 text",
         untouched=("hub.duckdb",)),
    Case("persona file of 100,000 nested [", hub_and(("deep.jsonl", "[" * 100_000 + "\n")),
         ("personas", "import", "{tmp}/deep.jsonl", "--db", "{db}"),
         "deep.jsonl:1: JSON nested deeper than 64 levels", tables=HUB),
    Case("persona attribute nested 100 deep",
         hub_and(("deep.jsonl", '{"persona": "A ferry pilot from Cork.", "a": '
                                + "[" * 100 + "]" * 100 + "}\n")),
         ("personas", "import", "{tmp}/deep.jsonl", "--db", "{db}"),
         'deep.jsonl:1: field "a" is nested deeper than 64 levels', tables=HUB),
    Case("persona text of 20,001 characters",
         hub_and(("big.jsonl", json.dumps({"persona": "A" + " nurse" * 3334}) + "\n")),
         ("personas", "import", "{tmp}/big.jsonl", "--db", "{db}"),
         "a persona may have at most 20,000", tables=HUB),
    Case("persona text holding a NUL",
         hub_and(("nul.jsonl", json.dumps({"persona": "A nurse\u0000 from Lisbon."}) + "\n")),
         ("personas", "import", "{tmp}/nul.jsonl", "--db", "{db}"),
         "nul.jsonl:1: field \"persona\": the persona text holds a NUL character", tables=HUB),
    Case("gzip cut inside its header", header_only_gz,
         ("personas", "import", "{tmp}/cut.jsonl.gz", "--db", "{db}"),
         "cut.jsonl.gz: unreadable data", tables=HUB),
    Case("--seed -5", hub_and_scenario(), ("run", "{tmp}/scenario.py", "--db", "{db}", "--seed", "-5"),
         "Invalid value for '--seed'", exit_code=2, tables=RUN),
    Case("--seed 2**80", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--seed", str(2**80)),
         "Invalid value for '--seed'", exit_code=2, tables=RUN),
    Case("synthesize --seed -5", lambda ctx: ctx.hub(),
         ("synthesize", "instruction", "--db", "{db}", "--seed", "-5"),
         "Invalid value for '--seed'", exit_code=2, tables=SYNTH),
    Case("scenario seed='abc'", hub_and_scenario(name="abc.py", extra="seed='abc',", seed=None),
         ("run", "{tmp}/abc.py", "--db", "{db}"),
         "scenario.seed must be an integer, got 'abc'", exit_code=2, tables=RUN),
    Case("scenario seed=2**80", hub_and_scenario(name="big.py", extra="seed=2**80,", seed=None),
         ("run", "{tmp}/big.py", "--db", "{db}"),
         "scenario.seed must be an integer within 0..9223372036854775807", exit_code=2,
         tables=RUN),
    Case("--max-tokens 1000000000000", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--max-tokens", "1000000000000"),
         "Invalid value for '--max-tokens'", exit_code=2, tables=RUN),
    Case("synthesize --max-tokens 1000000000000", lambda ctx: ctx.hub(),
         ("synthesize", "instruction", "--db", "{db}", "--max-tokens", "1000000000000"),
         "Invalid value for '--max-tokens'", exit_code=2, tables=SYNTH),
    Case("--timeout nan", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--timeout", "nan"),
         "Invalid value for '--timeout'", exit_code=2, tables=RUN),
    Case("scenario steps=1.5", hub_and_scenario(steps=1.5),  # type: ignore[arg-type]
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "scenario.steps must be an integer, got 1.5", exit_code=2, tables=RUN),
    Case("scenario task_weights=(1, inf)",
         hub_and_scenario(extra="tasks=('instruction', 'npc_dialogue'), "
                                "task_weights=(1, float('inf')),"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "scenario.task_weights[1] must be a finite number, got inf", exit_code=2, tables=RUN),
    Case("--llm with port 99999", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--llm", "http://127.0.0.1:99999/v1"),
         "not a valid URL (Port out of range 0-65535)", exit_code=2, tables=RUN),
    Case("--llm ''", hub_and_scenario(), ("run", "{tmp}/scenario.py", "--db", "{db}", "--llm", ""),
         "--llm is empty", exit_code=2, tables=RUN),
    Case("api_key_env=HOME", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--llm",
          "http://127.0.0.1:9/v1?model=m&api_key_env=HOME"),
         "api_key_env=HOME is not a key variable", exit_code=2, tables=RUN),
    # The job started, then every call failed ("Cannot combine AUTHORIZATION header")
    Case("--llm with user:password@", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--llm",
          "http://user:hunter2-pw@127.0.0.1:9/v1?model=m"),
         "--llm http://***@127.0.0.1:9/v1?model=m: credentials in the URL (user:password@) are "
         "not supported; put the key in a variable named ..._API_KEY and name it in the URL with "
         "?api_key_env=NAME", exit_code=2, tables=RUN),
    Case("export --out /proc/x.jsonl", lambda ctx: ctx.hub(),
         ("export", "--db", "{db}", "--run", "{run}", "--out", "/proc/x.jsonl"),
         "--out /proc/x.jsonl: cannot create a file in /proc", exit_code=2, tables=RUN),
    Case("export --out a FIFO --force", fifo,
         ("export", "--db", "{db}", "--run", "{run}", "--out", "{tmp}/pipe", "--force"),
         "is a FIFO (named pipe); --force replaces only a regular file", exit_code=2,
         tables=RUN),
    Case("--db in a missing folder", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{tmp}/nodir/x.duckdb"),
         "the folder {tmp}/nodir does not exist; create it first", exit_code=2,
         absent=("nodir",)),
    Case("a writer losing the lock race", hub_and_people, (),
         "in use by another process (PID", tables=HUB, invoke=held_lock),
    Case("from-text of a binary file", corpus("ls", ELF),
         ("personas", "from-text", "{tmp}/ls", "--db", "{db}"),
         "corpus {tmp}/ls: is a binary file (a NUL byte at byte 7), not text", tables=TEXT),
    Case("from-text of an empty corpus", corpus("empty.jsonl", b"\n\n"),
         ("personas", "from-text", "{tmp}/empty.jsonl", "--db", "{db}"),
         "no text to ask about (it is empty or every text is blank)", tables=TEXT),
    Case("from-text of a truncated .gz", truncated_gz,
         ("personas", "from-text", "{tmp}/trunc.jsonl.gz", "--db", "{db}"),
         "corpus {tmp}/trunc.jsonl.gz: damaged or truncated gzip data", tables=TEXT),
    # usage errors exit 2 (they exited 1)
    Case("--structured bogus", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--structured", "bogus"),
         "--structured 'bogus'", exit_code=2, tables=RUN),
    Case("--executor bogus", hub_and_scenario(),
         ("run", "{tmp}/scenario.py", "--db", "{db}", "--executor", "bogus"),
         "--executor 'bogus'", exit_code=2, tables=RUN),
    Case("sql --format bogus", lambda ctx: ctx.hub(),
         ("sql", "--db", "{db}", "--format", "bogus", "select 1"), "--format 'bogus'",
         exit_code=2, untouched=("hub.duckdb",)),
    Case("serve --error-rate 2", nothing, ("serve", "--port", "0", "--error-rate", "2"),
         "--error-rate must be within [0, 1], got 2.0", exit_code=2),
    Case("serve --latency inf", nothing, ("serve", "--port", "0", "--latency", "inf"),
         "--latency must be a finite number, got inf", exit_code=2),
    Case("serve --dialect bogus", nothing, ("serve", "--port", "0", "--dialect", "bogus"),
         "--dialect 'bogus'", exit_code=2),
    Case("expand --resume with --hops", lambda ctx: ctx.hub(),
         ("personas", "expand", "--db", "{db}", "--resume", "x", "--hops", "2"),
         "--resume x takes hops", exit_code=2, tables=HUB),
    # a value no command takes, refused below the CLI, exits 2 too (they
    # exited 1, or 0 for --stratify)
    Case("report --run with --job", lambda ctx: ctx.hub(),
         ("report", "--db", "{db}", "--run", "{run}", "--job", "J", "--out", "{tmp}/rep"),
         "--run and --job: give one", exit_code=2, tables=RUN, absent=("rep",)),
    Case("report --embedder bogus", lambda ctx: ctx.hub(),
         ("report", "--db", "{db}", "--embedder", "bogus", "--out", "{tmp}/rep"),
         "Invalid value for '--embedder': unknown embedder 'bogus'", exit_code=2, tables=RUN,
         absent=("rep",)),
    Case("diversity --embedder bogus", lambda ctx: ctx.hub(),
         ("diversity", "--db", "{db}", "--embedder", "bogus"),
         "Invalid value for '--embedder': unknown embedder 'bogus'", exit_code=2,
         untouched=("hub.duckdb",)),
    Case("diversity --embedder hash:x", lambda ctx: ctx.hub(),
         ("diversity", "--db", "{db}", "--embedder", "hash:x"),
         "Invalid value for '--embedder': embedder 'hash:x': the hash dimension", exit_code=2,
         untouched=("hub.duckdb",)),
    Case("personas dedup --embedder bogus", lambda ctx: ctx.hub(),
         ("personas", "dedup", "--db", "{db}", "--embedder", "bogus"),
         "Invalid value for '--embedder': unknown embedder 'bogus'", exit_code=2,
         untouched=("hub.duckdb",)),
    Case("personas expand --link-embedder bogus", lambda ctx: ctx.hub(),
         ("personas", "expand", "--db", "{db}", "--link-candidates", "2", "--link-embedder",
          "bogus"),
         "--link-embedder 'bogus': use hash or local[:model]", exit_code=2,
         untouched=("hub.duckdb",)),
    Case("synthesize rm_rf", lambda ctx: ctx.hub(),
         ("synthesize", "rm_rf", "--n", "1", "--db", "{db}"),
         "task 'rm_rf': choose one of math_problem", exit_code=2, tables=SYNTH),
    Case("judge with neither --job nor --run", lambda ctx: ctx.hub(),
         ("judge", "--db", "{db}"), "judge: give exactly one of --job or --run", exit_code=2,
         untouched=("hub.duckdb",)),
    Case("interview without --agent", lambda ctx: ctx.hub(),
         ("interview", "hi", "--run", "{run}", "--db", "{db}"),
         "interview: give --agent PERSONA_ID", exit_code=2, untouched=("hub.duckdb",)),
    Case("from-text --relations steal", corpus("corpus.txt", b"A nurse works nights.\n"),
         ("personas", "from-text", "{tmp}/corpus.txt", "--relations", "steal", "--db", "{db}"),
         "--relations: unknown steal; choose from read, write", exit_code=2, tables=TEXT),
    Case("personas sample --stratify an unknown attribute", lambda ctx: ctx.hub(),
         ("personas", "sample", "--db", "{db}", "--k", "2", "--stratify", "nosuchattr"),
         "--stratify 'nosuchattr': no persona has that attribute; known: ", exit_code=2,
         untouched=("hub.duckdb",)),
    Case("personas import of a file with no extension", hub_and(("people", "A nurse.\n")),
         ("personas", "import", "{tmp}/people", "--db", "{db}"),
         "people: cannot tell the format from the extension; give --format", exit_code=2,
         tables=HUB),
    Case("scenario with an unknown field", hub_and_scenario(extra="nosuchfield=3,"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "Scenario: unknown field 'nosuchfield'; known: name, description", exit_code=2,
         tables=RUN),
    Case("scenario field misspelt", hub_and_scenario(extra="kind=('instruction',),"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "Scenario: unknown field 'kind' (did you mean 'tasks'?)", exit_code=2, tables=RUN),
    Case("scenario part with an unknown field",
         hub_and_scenario(extra="activation=Activation(mode='probability', prob=0.5),"),
         ("run", "{tmp}/scenario.py", "--db", "{db}"),
         "Activation: unknown field 'prob'; known: mode, p, count, when", exit_code=2,
         tables=RUN),
]


# --------------------------------------------------------------------------- the test


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database with personas and one finished run (copied for each row), and the run's id."""
    folder = tmp_path_factory.mktemp("template")
    ctx = Ctx(folder, folder / "unused", contextlib.ExitStack())
    people(ctx)
    path = scenario(ctx, hops=1)
    db = folder / "template.duckdb"
    summary = run_simulation(RunConfig(scenario=load_scenario(path), db=db))
    assert not db.with_name(db.name + ".wal").exists()
    return db, summary.run_id


def snapshot(db: Path, tables: tuple[str, ...]) -> dict[str, list[tuple[Any, ...]]] | None:
    """The rows of ``tables`` (None when there is no database)."""
    if not db.is_file():
        return None
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def files(tmp: Path, names: tuple[str, ...]) -> dict[str, bytes | None]:
    return {n: (tmp / n).read_bytes() if (tmp / n).is_file() else None for n in names}


@contextlib.contextmanager
def row_context(tmp: Path, template: Path) -> Iterator[Ctx]:
    with contextlib.ExitStack() as stack:
        yield Ctx(tmp, template, stack)


def test_cases_are_named_uniquely():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 35


# every case in the full suite; the fast subset takes every other one (each group keeps rows)
@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=() if i % 2 == 0 else pytest.mark.slow)
                                  for i, c in enumerate(CASES)])
def test_bad_input_is_one_line(case: Case, tmp_path: Path, template: tuple[Path, str]) -> None:
    with row_context(tmp_path, template[0]) as ctx:
        ctx.values.update(tmp=str(tmp_path), db=str(ctx.db), run=template[1])
        case.setup(ctx)
        had_db = ctx.db.is_file()
        before = snapshot(ctx.db, case.tables) if case.tables else None
        kept = files(tmp_path, case.untouched)
        if case.invoke is not None:
            exit_code, stderr = case.invoke(ctx)
            stdout = ""
        else:
            args = [a.format(**ctx.values) for a in case.args]
            fragment = case.fragment.format(**ctx.values)
            result = CliRunner().invoke(app, args)
            assert result.exception is None or isinstance(result.exception, SystemExit), \
                repr(result.exception)
            exit_code, stderr, stdout = result.exit_code, result.stderr, result.stdout
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_code == case.exit_code != 0, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:"), lines[0]
    assert (fragment if case.invoke is None else case.fragment) in lines[0], lines[0]
    assert "Traceback" not in stderr + stdout
    if not had_db:  # a bad input never leaves a database behind
        assert not ctx.db.exists() or ctx.db.is_dir()
    if case.tables:
        assert snapshot(ctx.db, case.tables) == before
    assert files(tmp_path, case.untouched) == kept
    for name in case.untouched:
        assert not (tmp_path / f"{name}.wal").exists()
    for name in case.absent:
        assert not (tmp_path / name).exists(), name
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary


# --------------------------------------------------------------------------- beyond the table


@pytest.mark.slow  # end to end; the module is covered by the fast tests here
def test_a_real_process_exits_with_the_codes(tmp_path: Path) -> None:
    """The exit codes above hold for the installed entry point too, not only under CliRunner."""
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    code = "from personahub.cli.app import app; app(prog_name='personahub')"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    for args, expected in ((["run", str(tmp_path / "exits.py")], 1), (["run", "--bogus"], 2)):
        proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == expected and len(lines) == 1, proc.stderr
        assert lines[0].startswith("error:")


def test_help_is_unchanged_by_one_line_errors() -> None:
    result = CliRunner().invoke(app, ["run", "--help"])
    assert result.exit_code == 0 and "Usage" in result.output and "--cache" in result.output
    bare = CliRunner().invoke(app, [])
    assert "Commands" in bare.output and "error:" not in bare.output


def test_sys_exit_in_a_scenario_function_fails_the_run_naming_the_line(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path, tmp_path / "unused", contextlib.ExitStack())
    people(ctx)
    ctx.write("acting.py", textwrap.dedent("""\
        import sys

        from personahub.sim.scenario import Activation, GraphGrowth, PersonaSource, Scenario


        def when(step, info, rng):
            sys.exit(4)


        SCENARIO = Scenario(name="acting", personas=PersonaSource(path="people.jsonl"),
                            graph=GraphGrowth(hops=0), steps=2,
                            activation=Activation(mode="function", when=when))
        """))
    db = tmp_path / "acting.duckdb"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "acting.py"), "--db", str(db)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.stderr
    assert "acting.py:7: scenario code called sys.exit(4)" in errors[0]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs JOIN jobs ON job_id = run_id").fetchall() == [("failed",)]
    con.close()


def test_serve_binds_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    handle = start_server(host="::1", port=0)
    try:
        assert handle.base_url.startswith("http://[::1]:")
        assert httpx.get(f"{handle.base_url}/models", timeout=10).status_code == 200
    finally:
        handle.stop()


def test_an_end_of_data_escaping_a_command_is_named(tmp_path: Path, monkeypatch) -> None:
    """click turns an EOFError into its Abort; the line names the cause, not only "aborted"."""
    import personahub.personas.importers as importers

    def truncated(*args: Any, **kwargs: Any) -> Any:
        raise EOFError("Compressed file ended before the end-of-stream marker was reached")

    monkeypatch.setattr(importers, "iter_persona_batches", truncated)
    (tmp_path / "p.jsonl").write_text('{"persona": "A nurse from Lisbon."}\n')
    result = CliRunner().invoke(app, ["personas", "import", str(tmp_path / "p.jsonl"),
                                      "--db", str(tmp_path / "h.duckdb")])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.stderr
    assert lines[0] == ("error: aborted: unexpected end of data (EOFError: Compressed file ended "
                        "before the end-of-stream marker was reached)")
