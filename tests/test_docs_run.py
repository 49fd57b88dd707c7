"""Every ``personahub`` command in docs/*.md's shell blocks runs, offline, in the page's order
("every command in them runs"). tests/test_docs.py checks the same commands against
the CLI's commands and flags without running them; tests/test_readme.py runs README's.

Each page runs in a temporary folder of its own holding what a clean clone holds, through bash,
with ``personahub`` on PATH running this checkout (tests/doc_commands.py). Before its commands
come what the page takes the reader to have done (``BEFORE``: README's quick start, a stopped
run to resume) and the small files it names (``FILES``: a corpus, a marginals CSV), made here:
nothing is fetched. The ids a page shows as examples (``synth-20250101-120000-abc123``) stand
for the folder's own jobs (``REPLACED``). Only the commands in ``SKIPPED`` are left out, each
with its reason; ``STAND_INS`` runs an offline command in a skipped one's place where a later
command reads what it would have made.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.doc_commands import ROOT, clean_clone, missing_here, needs_something_outside, page_commands

PAGES = [page for page in sorted((ROOT / "docs").glob("*.md")) if page_commands(page)]
QUICK_START = "personahub run scenarios/riverside_town.py"


def latest(kind: str, db: str = "personahub.duckdb", status: str = "") -> str:
    """A shell substitution printing the id of the database's latest job of a kind."""
    where = f"kind = '{kind}'" + (f" and status = '{status}'" if status else "")
    return (f'$(personahub sql -d {db} --scalar "select job_id from jobs where {where} '
            f'order by started_at desc limit 1")')


def stopped(command: str) -> str:
    """Shell lines that start a job and stop it with SIGTERM while it waits on its first model
    calls, leaving it ``interrupted`` (exit 143) for a page's ``--resume`` line to go on with. The
    offline engine is slowed so that the job is waiting, not writing, when the signal comes."""
    return (f"{command} --offline-latency 5 2> stopped.log & pid=$!\n"
            "for _ in $(seq 600); do grep -q ' started in ' stopped.log && break; sleep 0.1; done\n"
            'sleep 2; kill -TERM "$pid"; wait "$pid"; test $? = 143 || { cat stopped.log; false; }')


def nurses_table(n: int = 240) -> str:
    """An attribute table of made-up nurses over 30 (Nemotron-Personas' columns, as `personas
    import` reads them): synthesis.md draws `--n 200` of `age>30`, `occupation~nurse`."""
    roles = ["nurse", "night-shift nurse", "school nurse", "nurse practitioner", "theatre nurse"]
    places = ["Lisbon", "Accra", "Osaka", "Leeds", "Quito", "Tartu", "Perth", "Cork", "Pune", "Oslo",
              "Omaha"]
    hobbies = ["keeps bees", "sings in a choir", "restores old bicycles", "plays chess online",
               "grows chillies", "swims in the sea every morning", "writes crime novels"]
    rows = ["persona,age,occupation,city"]
    for i in range(n):
        age, role, place = 31 + i % 50, roles[i % len(roles)], places[i % len(places)]
        rows.append(f"A {age}-year-old {role} from {place} who {hobbies[i % len(hobbies)]} "
                    f"and has worked {1 + i % 30} years on the wards.,{age},{role},{place}")
    return "\n".join(rows) + "\n"


def released_tools() -> str:
    """Two made-up lines in the shape of Persona Hub's released tool file (imported, then
    written back by `export --source-file`)."""
    tools = [("A harbour master who schedules ferry crossings", "tide_window", "Next safe tide window"),
             ("A school librarian who tracks overdue books", "overdue_books", "Books past their date")]
    return "".join(json.dumps({
        "input persona": persona, "description": "tool",
        "synthesized text": json.dumps({
            "name": name.replace("_", " ").title(), "description": what, "function_name": name,
            "input_args": [{"name": "day", "type": "string", "description": "a date"}],
            "return": {"type": "string", "description": what}, "depend": []})}) + "\n"
        for persona, name, what in tools)


def page_block(page: str, language: str) -> str:
    """The page's first fenced block of a language (a documented example file, used as is)."""
    found = re.search(rf"^```{language}\n(.*?)^```", (ROOT / page).read_text("utf-8"), re.S | re.M)
    assert found, f"{page} has no {language} block"
    return found.group(1)


SHARES = (ROOT / "examples" / "population_marginals.csv").read_text("utf-8")
JOINT = ("party,ideology,share\nrepublican,conservative,0.20\nrepublican,moderate,0.09\n"
         "democrat,liberal,0.18\ndemocrat,moderate,0.12\nindependent,moderate,0.20\n"
         "independent,liberal,0.07\nindependent,conservative,0.06\nother,moderate,0.08\n")
WEB = "".join(json.dumps({"url": f"https://example.org/{name}", "text": text}) + "\n" for name, text in [
    ("ferry", "The night ferry across the river stops running in winter, so commuters now drive "
              "around by the north bridge and the bakery on the quay closes early."),
    ("sourdough", "A guide to sourdough starters: feed the starter twice a day, keep it warm, and "
                  "bake when it has doubled."),
])

# What a page takes the reader to have done before its commands (shell lines).
BEFORE: dict[str, list[str]] = {
    "docs/batch.md": [QUICK_START],
    "docs/calibration.md": [],
    # the first block's `report -r "$run" -d hub.duckdb`: a run in hub.duckdb, its id in $run
    "docs/cli.md": [QUICK_START, "cp personahub.duckdb hub.duckdb", f"run={latest('run', 'hub.duckdb')}"],
    # `--allow-files` reads the reader's ids.csv; `--allow-writes out/` wants the folder made
    "docs/database.md": [QUICK_START, "cp personahub.duckdb hub.duckdb", "mkdir out",
                         "personahub sql --format csv \"select job_id as run_id from jobs "
                         "where kind = 'run'\" > ids.csv"],
    "docs/models.md": [],
    # the page builds its hub from the seeds; `expand --resume` goes on with a stopped expansion
    "docs/personas.md": [
        "personahub personas import personas/data/seed_personas.jsonl",
        stopped("personahub personas expand --hops 3 --limit 4")],
    "docs/scale.md": [QUICK_START],
    # `run --resume ... --db town.duckdb` goes on with a stopped run
    "docs/scenarios.md": [QUICK_START,
                          stopped("personahub run scenarios/riverside_town.py --db town.duckdb")],
    # hub.duckdb holds a run (exported, judged, reported), nurses with an age and an occupation
    # (the `--personas`/`--carve` draws) and an imported Persona Hub file (`--source-file`)
    "docs/synthesis.md": [f"{QUICK_START} --db hub.duckdb",
                          "personahub personas import nurses.csv --db hub.duckdb",
                          "personahub personas import personahub_tool_sample.jsonl --db hub.duckdb"],
    "docs/view.md": [],
}

# Files a page's commands read that the reader is taken to have (name -> content).
FILES: dict[str, dict[str, str]] = {
    "docs/calibration.md": {"shares.csv": SHARES, "survey.csv": page_block("docs/calibration.md", "csv")},
    "docs/personas.md": {"web.jsonl": WEB, "shares.csv": SHARES, "party_ideology.csv": JOINT,
                         "shares.json": json.dumps({"sex": {"female": 0.51, "male": 0.49},
                                                    "party": {"democrat": 0.5, "republican": 0.5}})},
    "docs/synthesis.md": {
        "demos.jsonl": json.dumps({"text": "A ward runs 3 shifts of 8 nurses. How many nurse-shifts "
                                   "are worked in a week?", "persona": "A ward sister"}) + "\n",
        "nurses.csv": nurses_table(), "personahub_tool_sample.jsonl": released_tools()},
}

# Example ids a page shows, and the shell substitution of the folder's job each stands for.
REPLACED: dict[str, dict[str, str]] = {
    "docs/batch.md": {"synth-…": latest("synthesis")},
    "docs/calibration.md": {"calib-20261123-101500-a1b2c3": latest("calibration", "hub.duckdb")},
    "docs/models.md": {"8000": "$PORT"},  # a free port: 8000 may be taken on a shared machine
    "docs/personas.md": {"exp-20250101-120000-abc123": latest("expansion", status="interrupted")},
    "docs/scenarios.md": {"20250101-120000-abc123": latest("run", "town.duckdb", "interrupted")},
    "docs/synthesis.md": {
        "synth-20250101-120000-abc123": latest("synthesis", "hub.duckdb"),
        "20250101-120000-abc123": latest("run", "hub.duckdb"),
        "evaluation-b9932f39c03f": latest("evaluation", "math.duckdb"),
        "s83ab84a8b3c9711":
            '$(personahub sql -d hub.duckdb --scalar "select min(item_id) from synth_items")'},
}

MODEL = "needs a model server (an OpenAI-compatible URL)"
OPENAI = "needs OpenAI (an API key and the network)"
SERVES = "serves until Ctrl-C"
SKIPPED: dict[str, dict[str, str]] = {
    "docs/batch.md": {
        "personahub synthesize math_problem --n 2000 --llm openai:gpt-4o-mini --structured "
        "json_schema --provider-batch": OPENAI,
        "personahub run scenarios/riverside_town.py --llm openai:gpt-4o-mini --provider-batch": OPENAI,
        "personahub judge --job synth-… --llm openai:gpt-4o-mini --structured json_schema "
        "--provider-batch": OPENAI,
        'personahub provider-batch import results.jsonl --job synth-… --llm '
        '"http://gpu-box:8000/v1?model=Qwen/Qwen2.5-7B-Instruct"':
            "reads results.jsonl, the answers vLLM's run-batch writes on a GPU box",
    },
    "docs/calibration.md": {
        "personahub calibrate path/to/American_Trends_Panel_W26 --population pop-1a2b3c4d5e --n 20 "
        "--db hub.duckdb --llm http://127.0.0.1:8080/v1":
            "needs an OpinionQA wave the reader downloads, and a model server",
        "personahub calibrate path/to/American_Trends_Panel_W26 --population pop-1a2b3c4d5e --n 20 "
        "--fit --elicit distribution --elicit logprobs --elicit few-shot:2 --steering persona "
        "--steering attributes --db hub.duckdb --llm http://127.0.0.1:8080/v1":
            "needs an OpinionQA wave the reader downloads, and a model server",
        "personahub run scenarios/riverside_town.py --survey-profile calib-20261123-101500-a1b2c3 "
        "--db hub.duckdb --llm http://127.0.0.1:8080/v1":
            "needs the profile's model server (a profile answers on the model it was fitted on)",
    },
    "docs/models.md": {
        'personahub doctor --llm "http://127.0.0.1:8080/v1?model=local"': MODEL,
        'personahub doctor --llm "http://127.0.0.1:8080/v1?model=local" --max-concurrency 16 '
        '--budget 60 --json': MODEL,
    },
    "docs/personas.md": {
        'personahub personas from-text web.jsonl --id-column url --llm '
        '"http://127.0.0.1:8000/v1?model=NAME"': MODEL,
        "personahub personas dedup --embedder openai:text-embedding-3-small --cache record --rps 20":
            OPENAI,
        "personahub personas sample-population --marginals shares.csv -n 2000 --llm "
        "openai:gpt-4o-mini --cache record": OPENAI,
        "personahub personas sample-population --resume popwrite-20250101-120000-abc123 --llm "
        "openai:gpt-4o-mini": OPENAI,
    },
    "docs/scale.md": {
        "personahub synthesize math_problem --n 200 --executor ray --ray-address auto --ray-workers 8":
            "joins a running Ray cluster",
        "personahub synthesize math_problem --n 1000000 --solve --executor ray --ray-workers 32 "
        "--concurrency 32 --llm 'http://vllm-a:8000/v1?model=Qwen/Qwen2.5-7B-Instruct' "
        "--db math-0.duckdb": "needs a Ray cluster and vLLM servers",
    },
    "docs/scenarios.md": {
        'personahub run scenarios/product_launch.py --llm "http://127.0.0.1:8000/v1?model=NAME" '
        '--concurrency auto': MODEL,
    },
    "docs/synthesis.md": {
        "personahub judge --db hub.duckdb --job synth-20250101-120000-abc123 --sample 200 --seed 1 "
        "--llm openai:gpt-4o-mini": OPENAI,
        "personahub diversity --db hub.duckdb --embedder openai:text-embedding-3-small": OPENAI,
    },
    "docs/view.md": {
        "personahub run scenarios/product_launch.py --view --offline-latency 0.2": SERVES,
        "personahub view --db personahub.duckdb --run 20250101-120000-abc123 --port 8765": SERVES,
        "personahub experiment scenarios/product_launch.py --view --view-port 0": SERVES,
        "personahub view --db personahub.duckdb --experiment product_launch --port 0": SERVES,
    },
}

# Commands the CLI gets wrong today (reported, not fixed here), left out with the bug so that the
# page's other commands still run. An entry goes when its bug is fixed.
CLI_BUGS: dict[str, dict[str, str]] = {}

# A skipped command whose output a later command of the page reads: what runs in its place.
STAND_INS: dict[str, dict[str, str]] = {
    # the page's own long-CSV example, asked of the population just drawn, offline
    "docs/calibration.md": {
        "personahub calibrate path/to/American_Trends_Panel_W26 --population pop-1a2b3c4d5e --n 20 "
        "--db hub.duckdb --llm http://127.0.0.1:8080/v1":
            "personahub calibrate survey.csv --population $(personahub sql -d hub.duckdb --scalar "
            "\"select any_value(attributes->>'population') from personas\") --n 20 --db hub.duckdb",
    },
    # the survey query below it reads the launch's purchase-intent answers
    "docs/scenarios.md": {
        'personahub run scenarios/product_launch.py --llm "http://127.0.0.1:8000/v1?model=NAME" '
        '--concurrency auto': "personahub run scenarios/product_launch.py",
    },
}


def _example(text: str) -> re.Pattern[str]:
    """An example id as a word of a command (``20250101-...`` is not the tail of ``synth-2025...``)."""
    return re.compile(rf"(?<![\w-]){re.escape(text)}(?![\w-])")


def _replaced(page: str, command: str) -> str:
    for example, substitute in REPLACED.get(page, {}).items():
        command = _example(example).sub(lambda _, shell=substitute: shell, command)
    return command


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_skip_list_names_exactly_the_commands_that_need_something_outside() -> None:
    """A command is skipped only when it needs a model, a cluster or a server kept up, and every
    entry of the tables above names a page, a command or an example id as the docs have it now."""
    pages = {str(page.relative_to(ROOT)) for page in PAGES}
    assert set(BEFORE) == pages and len(pages) >= 9
    assert set(SKIPPED) | set(FILES) | set(REPLACED) | set(CLI_BUGS) | set(STAND_INS) <= pages
    for page in pages:
        commands = page_commands(ROOT / page)
        assert set(SKIPPED.get(page, {})) == needs_something_outside(commands), page
        assert set(STAND_INS.get(page, {})) <= set(SKIPPED.get(page, {})), page
        assert set(CLI_BUGS.get(page, {})) <= set(commands) - set(SKIPPED.get(page, {})), page
        for example in REPLACED.get(page, {}):
            assert any(_example(example).search(c) for c in commands), (page, example)


def _steps(name: str) -> list[tuple[str, str]]:
    """(why, shell line) in the order they run: what the page takes as done, then its commands
    (why empty), skipped ones left out or replaced by their stand-in."""
    steps = [("before the page", line) for line in BEFORE[name]]
    for command in page_commands(ROOT / name):
        if command in SKIPPED.get(name, {}) or command in CLI_BUGS.get(name, {}):
            if command in STAND_INS.get(name, {}):
                steps.append((f"in place of `{command}`", STAND_INS[name][command]))
        elif not missing_here(command):  # an optional extra (or jq) that is not installed here
            steps.append(("", _replaced(name, command)))
    return steps


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_docs_command_runs(page: Path, tmp_path: Path) -> None:
    name = str(page.relative_to(ROOT))
    steps = _steps(name)
    if all(why for why, _ in steps):
        pytest.skip(f"{name}: every command is skipped ({'; '.join(sorted(set(SKIPPED[name].values())))})")
    work, env = clean_clone(tmp_path)
    for file, content in FILES.get(name, {}).items():
        (work / file).write_text(content, encoding="utf-8")
    logs = tmp_path / "logs"
    logs.mkdir()
    # one bash for the page (a step's variables and background server live on), each step's
    # output in its own log, the first step to fail named in logs/failed
    script = [f"export PORT={_free_port()}", "trap 'kill $(jobs -p) 2>/dev/null' EXIT"]
    for number, (_, line) in enumerate(steps):
        script.append(f"{{ {line}\n}} > {logs}/{number}.log 2>&1\n"
                      f'status=$?; [ $status = 0 ] || {{ echo "{number} $status" > {logs}/failed; exit 1; }}')
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, text=True,
                          capture_output=True, timeout=900)
    if (logs / "failed").exists():
        number, status = (int(word) for word in (logs / "failed").read_text().split())
        why, line = steps[number]
        output = (logs / f"{number}.log").read_text(errors="replace")
        pytest.fail(f"{name}: {why or 'the command'} `{line}` exited {status} in {work}:\n"
                    f"{output[-4000:]}")
    assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
