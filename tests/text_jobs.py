"""Text-to-persona jobs in tests: the job spec run on a test's open hub connection with a client
of its own, as the command and the API run it (a corpus that has its job goes on with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personahub import runtime
from personahub.persona_jobs import rerun_settings
from personahub.personas.text_jobs import find_text_job
from personahub.personas.text_to_persona import TextToPersonaSummary
from personahub.pipelines.text_to_persona import TEXT_TO_PERSONA, TextConfig
from tests.expansions import db_of


def text_job(con: Any, caller: Any, path: Path, *, corpus: str = "c", progress: Any = None,
             **options: Any) -> TextToPersonaSummary:
    """Ask about the corpus at ``path`` with ``caller`` into the hub behind ``con``."""
    db = db_of(con)
    config: Any = TextConfig(corpus=corpus, path=str(Path(path).resolve()), db=db, **options)
    job = find_text_job(con, corpus)
    if job is not None:
        config = rerun_settings(config, options)
    return runtime.run(TEXT_TO_PERSONA, config, db, resume=job.job_id if job else None,
                       client=caller, con=con, progress=progress).summary
