"""Record/replay cache of model answers, in the llm_cache table.

Keyed by model name (not URL, so replicas share entries), messages, schema, parameters and a sample
index, so repeated prompts keep distinct answers. The raw payload is stored, valid or not, so a
replay repeats repairs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

import duckdb
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from personahub.core.contracts import CACHE_MODES, CacheEntry, StructuredCaller
from personahub.core.errors import PersonahubError, UsageError
from personahub.core.store import connect, database_path, record_rows, scalar
from personahub.models.message_dicts import to_openai_dicts

CacheMode = Literal["off", "record", "replay"]
__all__ = ["CACHE_MODES", "CacheMiss", "ResponseCache", "attach_cache", "check_replay_cache"]


class CacheMiss(PersonahubError):
    """A replay met a request the cache holds no answer for."""


Answer = tuple[str | None, int, int, str | None]


@lru_cache(maxsize=256)
def schema_fingerprint(schema: type[BaseModel]) -> str:
    """Short hash of the schema's JSON schema."""
    text = json.dumps(schema.model_json_schema(), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def request_payload(model: str, messages: Sequence[BaseMessage], schema: type[BaseModel],
                    params: Mapping[str, object]) -> dict[str, object]:
    """Return the request as keyed and stored: no URL, no credentials."""
    return {
        "model": model,
        "messages": to_openai_dicts(messages),
        "schema": {"name": schema.__name__, "sha256": schema_fingerprint(schema)},
        "params": dict(params),
    }


def request_hash(request: Mapping[str, object]) -> str:
    """SHA-256 of a request's canonical JSON."""
    text = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(base: str, sample: int) -> str:
    return hashlib.sha256(f"{base}:{sample}".encode()).hexdigest()


def failure_key(key: str) -> str:
    """Where a call that failed for good is recorded, so replays reproduce the failure."""
    return f"{key}:failed"


class ResponseCache:
    """Answers by key and the per-run sample counters."""

    def __init__(self, mode: CacheMode, model: str,
                 answers: dict[str, Answer] | None = None) -> None:
        if mode not in ("record", "replay"):
            raise PersonahubError(f"--cache {mode!r}: a cache is used in 'record' or 'replay' mode")
        self.mode = mode
        self.model = model
        self._answers = answers or {}
        self._samples: dict[str, int] = {}

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, mode: CacheMode, model: str) -> ResponseCache:
        rows = con.execute("SELECT key, response, tokens_in, tokens_out, error FROM llm_cache "
                           "WHERE model = ?", [model]).fetchall()
        return cls(mode, model, {k: (r, int(ti or 0), int(to or 0), e) for k, r, ti, to, e in rows})

    def __len__(self) -> int:
        return len(self._answers)

    def next_sample(self, base: str) -> int:
        """Return the sample index for one more asking of a request."""
        sample = self._samples.get(base, 0)
        self._samples[base] = sample + 1
        return sample

    def get(self, key: str) -> Answer | None:
        return self._answers.get(key)

    def put(self, entry: CacheEntry) -> None:
        """Remember an answer for later samples of this run; writing it is the job's."""
        self._answers[entry.key] = (entry.response, entry.tokens_in or 0, entry.tokens_out or 0,
                                    entry.error)


def cache_rows(entries: Iterable[CacheEntry]) -> list[dict[str, object]]:
    return record_rows(entries)


def check_replay_cache(db: str | Path, model: str) -> None:
    """Refuse a replay with nothing recorded before it leaves a job behind."""
    check_replay_file(db)
    con = connect(db, read_only=True)
    try:
        _check_recorded(con, db, model)
    finally:
        con.close()


def check_replay_file(db: str | Path) -> None:
    if not Path(db).is_file():
        raise PersonahubError(f"--cache replay: {db} does not exist, so no answer is recorded; "
                              "record them first with --cache record")


def _check_recorded(con: duckdb.DuckDBPyConnection, db: str | Path, model: str) -> None:
    recorded = scalar(con, "SELECT count(*) FROM llm_cache WHERE model = ?", [model])
    if not recorded:
        others = [r[0] for r in con.execute(
            "SELECT DISTINCT model FROM llm_cache ORDER BY 1 LIMIT 4").fetchall()]
        if others:
            raise PersonahubError(
                f"--cache replay: {db} holds no recorded answer of model {model!r}, only of "
                f"{', '.join(repr(m) for m in others)}; use the same --llm they were recorded with "
                "(or record this one with --cache record)")
        raise PersonahubError(f"--cache replay: {db} holds no recorded answer of model {model!r}; "
                              "record them first with --cache record (same --llm)")


def attach_cache(con: duckdb.DuckDBPyConnection, client: StructuredCaller, mode: str) -> None:
    """Answer the job's calls from and record into the cache."""
    if mode not in CACHE_MODES:
        raise UsageError(f"--cache {mode!r}: use one of {', '.join(CACHE_MODES)}")
    if mode == "replay":
        _check_recorded(con, database_path(con), client.cache_model)
    if mode != "off":
        client.use_cache(ResponseCache.load(con, mode, client.cache_model))  # type: ignore[arg-type]
