"""The fields of every shipped kind's config dataclass, in order (issue 43).

The CLI and the API build these configs and a job stores them, so sharing field declarations
(``EngineFields``, ``GenerationFields``, ``InterviewConfig`` on ``InterviewRequest``) must keep
each config's field names and engine marks; the order is the stored config's key order. Engine
fields are marked ``*``.
"""

from __future__ import annotations

import dataclasses
import importlib

import pytest

EXECUTOR = "cache* executor* ray_address* ray_workers*"
MODEL = "llm* concurrency* timeout_s* offline_latency_s* rps* max_failed_share*"
BATCH = "batch* batch_window* batch_fallback* batch_file* batch_poll_s*"
GENERATION = "structured max_tokens temperature top_p"  # pipelines.model_fields.GenerationFields
ENGINE = f"{EXECUTOR} {MODEL} {BATCH} {GENERATION}"  # pipelines.model_fields.EngineFields

FIELDS = {
    ("calibrate", "CalibrateConfig"):
        (f"{ENGINE} survey population carve n no_persona_n steering questions attributes limit "
         "offer_refusal seed elicit dispersion archetypes batch_size*"),
    ("dedup", "DedupJobConfig"):
        (f"{BATCH} threshold num_perm ngram embedder embed_threshold ann batch_size* db* cache* "
         "rps* timeout_s* executor* ray_address* ray_workers*"),
    ("evaluate", "EvalConfig"):
        (f"{BATCH} job items question_column answer_column items_sha256 solvers* models* "
         "equivalence_judge* test_share test_n seed agree samples mode against against_sha256 "
         "ngram keep_contaminated family_threshold db* concurrency* timeout_s* batch_size* "
         "executor* ray_address* ray_workers*"),
    ("expand", "ExpandConfig"):
        (f"{ENGINE} hops fanout threshold language link_candidates link_embedder limit "
         "start_ids origin seed batch_size db* stop_on_failure*"),
    ("interview", "InterviewConfig"):
        (f"{MODEL} {EXECUTOR} {BATCH} {GENERATION} run_id question agent where carve step limit seed "
         "db* batch_size*"),
    ("judge", "JudgeConfig"):
        (f"{MODEL} {EXECUTOR} {BATCH} {GENERATION} job run kind sample seed db* batch_size*"),
    ("population_write", "WriteConfig"):
        (f"{EXECUTOR} {MODEL} {GENERATION} marginals joint n seed batch_size*"),
    ("run", "RunConfig"):
        (f"{ENGINE} scenario* scenario_file scenario_sha256 steps seed archetypes "
         "archetype_elicit price_in price_out include_ungated db* max_retries* chunk_size* steering*"),
    ("synthesize", "SynthConfig"):
        (f"{ENGINE} task n per_persona where carve sample include_ungated prompting examples "
         "world solve with_assistant seed db* batch_size* allow_fewer*"),
    ("text_to_persona", "TextConfig"):
        (f"{ENGINE} corpus relations per_text text_column id_column split skip_bad language "
         "seed path* limit* db* batch_size*"),
}


@pytest.mark.parametrize(("module", "name"), sorted(FIELDS))
def test_config_fields_keep_their_names_marks_and_order(module: str, name: str) -> None:
    config = getattr(importlib.import_module(f"personahub.pipelines.{module}"), name)
    got = " ".join(f.name + ("*" if f.metadata.get("engine") else "")
                   for f in dataclasses.fields(config))
    assert got == FIELDS[module, name]
