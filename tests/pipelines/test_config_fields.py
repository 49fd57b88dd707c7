"""The fields of every job kind's config dataclass, in order, and each kind's sample config.

The kinds are the rows of ``pipelines/labels.py``; each kind's config is its registered spec's.
The CLI and the API build these configs and a job stores them, so sharing field declarations
(``EngineFields``, ``GenerationFields``, ``InterviewConfig`` on ``InterviewRequest``) must keep
each config's field names and engine marks; the order is the stored config's key order. Engine
fields are marked ``*``. The pinned lines are ``config_fields.txt``, one per kind, the shared
groups below written by name: ``python tests/pipelines/test_config_fields.py`` writes them
(review the diff), and a kind without its line fails until it is written.

A row's sample is a stored config of its kind: its keys are fields of the kind's config, and
its label says something of it that it would not say of an empty config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import pytest

from personahub import runtime
from personahub.pipelines.labels import SHIPPED, ShippedKind

GOLDEN = Path(__file__).with_name("config_fields.txt")

#: the shared field groups, by the name a pinned line writes them with (the longest first)
GROUPS = {
    "ENGINE": "{EXECUTOR} {MODEL} {BATCH} {GENERATION}",  # pipelines.model_fields.EngineFields
    "EXECUTOR": "cache* executor* ray_address* ray_workers*",
    "MODEL": "{REQUEST} llm* concurrency* offline_latency_s* max_failed_share*",
    "BATCH": ("provider_batch* provider_batch_window* provider_batch_fallback* "
              "provider_batch_file* provider_batch_poll_s*"),
    "GENERATION": "structured max_tokens temperature top_p",  # model_fields.GenerationFields
    "REQUEST": "timeout_s* rps*",  # model_fields.RequestFields, in MODEL: after it
}


def expanded(line: str) -> str:
    """A pinned line with each group's name replaced by its fields (ENGINE's by theirs)."""
    for name, fields in GROUPS.items():
        line = line.replace(f"{{{name}}}", fields)
    return line


def compressed(line: str) -> str:
    """A line of fields with each group's fields written by the group's name, word by word."""
    words = line.split()
    for name in GROUPS:
        group = expanded(GROUPS[name]).split()
        i = 0
        while i <= len(words) - len(group):
            if words[i:i + len(group)] == group:
                words[i:i + len(group)] = [f"{{{name}}}"]
            i += 1
    return " ".join(words)


def fields_line(config_type: type) -> str:
    """A config's fields in order, engine fields marked ``*``."""
    return " ".join(f.name + ("*" if f.metadata.get("engine") else "")
                    for f in dataclasses.fields(config_type))


def pinned() -> dict[str, str]:
    """Kind -> its pinned line of fields, expanded."""
    if not GOLDEN.exists():
        return {}
    lines = [line.partition(": ") for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
    return {kind: expanded(fields) for kind, _, fields in lines}


def config_type_of(kind: str) -> type:
    spec = runtime.registered_spec(kind)
    assert spec is not None, kind
    return spec.config_type


def unpinned(rows: Mapping[str, ShippedKind], pins: Mapping[str, str]) -> list[str]:
    """The kinds of the rows without a pinned line."""
    return [kind for kind in rows if kind not in pins]


def sample_problems(kind: str, row: ShippedKind, config_type: type) -> list[str]:
    """What is wrong with a row's sample: no sample, a key that is no field of the kind's
    config, or a label that says of it only what it says of an empty config."""
    if not row.sample:
        return [f"{kind}: no sample config (the row's sample=)"]
    fields = {f.name for f in dataclasses.fields(config_type)}
    problems = [f"{kind}: sample key {key!r} is no field of {config_type.__name__}"
                for key in row.sample if key not in fields]
    if row.label(row.sample) == row.label({}):
        problems.append(f"{kind}: the label says nothing of the sample")
    return problems


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_config_fields_keep_their_names_marks_and_order(kind: str) -> None:
    pins = pinned()
    assert not unpinned({kind: SHIPPED[kind]}, pins), (
        f"no line for {kind} in {GOLDEN.name}: run python tests/pipelines/test_config_fields.py "
        "and review it")
    assert fields_line(config_type_of(kind)) == pins[kind]


def test_every_pinned_line_is_a_kind_s() -> None:
    assert sorted(pinned()) == sorted(SHIPPED)


@pytest.mark.parametrize("kind", sorted(SHIPPED))
def test_each_row_s_sample_is_a_stored_config_of_its_kind(kind: str) -> None:
    assert sample_problems(kind, SHIPPED[kind], config_type_of(kind)) == []


def test_a_row_without_a_sample_or_with_a_wrong_key_is_detected() -> None:
    judge = SHIPPED["judge"]
    config = config_type_of("judge")
    assert sample_problems("judge", judge.replace(sample={}), config) == [
        "judge: no sample config (the row's sample=)"]
    assert sample_problems("judge", judge.replace(sample={"jobs": "j1"}), config) == [
        "judge: sample key 'jobs' is no field of JudgeConfig",
        "judge: the label says nothing of the sample"]


def test_groups_are_written_by_name_and_read_back() -> None:
    line = fields_line(config_type_of("synthesis"))
    assert compressed(line).startswith("{ENGINE} task n ")
    assert expanded(compressed(line)) == line


if __name__ == "__main__":  # rewrite the pinned lines (review the diff before committing)
    GOLDEN.write_text("".join(f"{kind}: {compressed(fields_line(config_type_of(kind)))}\n"
                              for kind in sorted(SHIPPED)), encoding="utf-8")
    print(GOLDEN)
