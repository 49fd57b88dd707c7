"""The provider's Batch API options are called ``provider batch``; ``batch`` is the commit unit.

The former flags (``--batch``, ``--batch-file``, ...) still work as hidden aliases that say
their new name in one line on stderr; the former API keywords (``batch=True``, ...) still work
with a DeprecationWarning; a job config stored under the former field names resumes with them.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import typer
from typer.testing import CliRunner

import personahub
from personahub import runtime
from personahub.cli import engine as cli_engine
from personahub.cli.common import one_line_errors
from personahub.core.engine_options import BATCH, ENGINE_OPTIONS, RENAMED_FIELDS, renamed_fields
from personahub.core.errors import PersonahubError
from personahub.core.kernel import resumed_config
from personahub.pipelines.synthesize import SYNTHESIS, SynthConfig

OLD_AND_NEW = [(ENGINE_OPTIONS[f].old_flag, ENGINE_OPTIONS[f].flag) for f in BATCH]


def toy() -> tuple[typer.Typer, list[cli_engine.Engine]]:
    """A command taking the batch options, its errors one line as every command's are."""
    got: list[cli_engine.Engine] = []
    app = typer.Typer()

    @app.command()
    @one_line_errors
    @cli_engine.engine_options("batch", batch_size=("Things", 7))
    def command(n: int = 1, *, engine: cli_engine.Engine) -> None:
        got.append(engine)

    return app, got


def test_every_provider_batch_option_has_its_former_flag() -> None:
    assert OLD_AND_NEW == [("--batch", "--provider-batch"),
                           ("--batch-file", "--provider-batch-file"),
                           ("--batch-window", "--provider-batch-window"),
                           ("--batch-fallback", "--provider-batch-fallback"),
                           ("--batch-poll", "--provider-batch-poll")]
    assert set(RENAMED_FIELDS.values()) == set(BATCH)


def test_the_former_flags_mean_the_new_ones_and_say_so(tmp_path: Path) -> None:
    app, got = toy()
    requests = str(tmp_path / "requests.jsonl")
    new = CliRunner().invoke(app, ["--provider-batch", "--provider-batch-file", requests,
                                   "--provider-batch-window", "2h", "--provider-batch-fallback",
                                   "online", "--provider-batch-poll", "0.5"])
    assert new.exit_code == 0, new.output
    assert "deprecated" not in new.output
    old = CliRunner().invoke(app, ["--batch", "--batch-file", requests, "--batch-window", "2h",
                                   "--batch-fallback", "online", "--batch-poll", "0.5"])
    assert old.exit_code == 0, old.output
    assert got[-1].batching() == got[-2].batching()
    assert got[-1].batching()["provider_batch_window"] == "2h"
    notes = [line for line in old.stderr.splitlines() if "deprecated" in line]
    assert sorted(notes) == sorted(f"note: {o} is deprecated; it is called {n} now"
                                   for o, n in OLD_AND_NEW)


def test_a_former_flag_is_checked_as_the_new_one_and_never_given_with_it() -> None:
    app, _ = toy()
    refused = CliRunner().invoke(app, ["--batch-poll", "0"])
    assert refused.exit_code == 2
    both = CliRunner().invoke(app, ["--batch-window", "2h", "--provider-batch-window", "3h"])
    assert both.exit_code == 2
    assert "--batch-window is the old name of --provider-batch-window" in both.output


def test_help_shows_only_the_new_flags() -> None:
    app, _ = toy()
    shown = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--provider-batch-window" in shown and "--batch-size" in shown
    assert "--batch " not in shown and "--batch-window" not in shown


def test_a_former_api_keyword_warns_and_means_the_new_one(tmp_path: Path) -> None:
    db = tmp_path / "hub.duckdb"
    with pytest.warns(DeprecationWarning, match="batch_window is deprecated; it is called "
                                                "provider_batch_window now"), \
            pytest.raises(PersonahubError, match="provider_batch_window"):
        personahub.synthesize("math_problem", db=db, n=1, batch_window="tomorrow")
    with pytest.raises(PersonahubError, match="batch_window is the old name of "
                                              "provider_batch_window"):
        personahub.synthesize("math_problem", db=db, n=1, batch_window="2h",
                              provider_batch_window="3h")
    assert not db.exists()  # refused before anything was written


def test_a_config_stored_under_the_former_names_resumes_with_them() -> None:
    stored = {"task": "math_problem", "n": 2, "llm": "offline", "batch": False,
              "batch_window": "2h", "batch_fallback": "online", "batch_poll_s": 0.5,
              "batch_file": None}
    config = resumed_config(SYNTHESIS, SYNTHESIS.upgrade(renamed_fields(stored)),
                            {"llm": "offline"}, "j")
    assert (config.provider_batch_window, config.provider_batch_fallback,
            config.provider_batch_poll_s) == ("2h", "online", 0.5)
    assert renamed_fields({"batch": True, "provider_batch": False}) == {"provider_batch": False}


@pytest.mark.slow  # a synthesis job, then its resume
def test_a_job_stored_under_the_former_names_resumes_with_its_provider_batch(
        tmp_path: Path) -> None:
    """A stopped job whose stored config says ``batch: true`` resumes as a provider batch job:
    offline, that is refused in one line, as ``--provider-batch`` is."""
    db = tmp_path / "hub.duckdb"
    done = runtime.run(SYNTHESIS, SynthConfig(task="math_problem", n=1, db=str(db)), db)
    con = duckdb.connect(str(db))
    (stored,) = con.execute("SELECT config FROM jobs WHERE job_id = ?", [done.job_id]).fetchone()
    config = json.loads(stored)
    for old, new in RENAMED_FIELDS.items():
        config[old] = config.pop(new)
    config["batch"] = True
    con.execute("UPDATE jobs SET status = 'interrupted', config = ? WHERE job_id = ?",
                [json.dumps(config), done.job_id])
    con.execute("DELETE FROM synth_items WHERE job_id = ?", [done.job_id])  # left to ask
    con.close()
    with pytest.raises(PersonahubError, match="--provider-batch: offline answers in process"):
        runtime.run(SYNTHESIS, {"llm": "offline"}, db, resume=done.job_id)
