"""What one batch of an expansion asks (the expansion question per frontier persona, then the
triangle-closing questions) and what the answers add to the hub, before the spec commits it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import duckdb

from personahub.core.contracts import StructuredCaller, StructuredResult
from personahub.core.failures import call_error
from personahub.personas.asks import Ask, Asks, local_asks
from personahub.personas.expand import EXPAND_MAX_TOKENS, Linking, related_personas_schema
from personahub.personas.graph import Relation
from personahub.personas.link_merge import apply_merges, merge_rows, resolve
from personahub.personas.linking import (
    LINK_PURPOSE,
    hub_neighbours,
    link_relations,
    link_schema,
    pick_candidates,
    same_person,
    texts_of,
)
from personahub.personas.near_dup import NearIndex
from personahub.personas.quality import gate_answer, gate_item, rejected_row, repair_relation
from personahub.personas.record import Persona
from personahub.pipelines.prompts.personas import expand_messages, link_messages, prompt_text

# how a frontier persona whose answers the quality gate rejected reads among a batch's errors
GATE_ERROR = "quality gate: "


@dataclass
class BatchAnswer:
    """What one batch produced, uncommitted: new graph rows, frontier marks, calls, and the error of
    each frontier persona that yielded no one.
    """

    created: list[Persona]
    relations: list[Relation]
    rejected: list[dict[str, object]]
    marks: list[dict[str, object]]
    merges: list[dict[str, object]]
    calls: list[StructuredResult[Any]]
    errors: list[str | None]
    kept: int  # frontier personas whose answer yielded someone


async def answer_batch(con: duckdb.DuckDBPyConnection, caller: StructuredCaller,
                       index: NearIndex, expansion_id: str, level: int,
                       parents: list[Persona], fanout: int, run_id: str | None, language: str | None = None,
                       linking: Linking | None = None) -> BatchAnswer:
    """Ask about one batch of frontier personas and work out what it adds, writing nothing. The
    near-duplicate index and the aliases take in the new personas at once, because the next batch
    must see them.
    """
    linking = linking or Linking()
    asks = local_asks(caller)
    # what each call shows the model; the quality gate rejects an answer that merely restates it
    shown = {p.persona_id: expand_messages(p.text, fanout, language=language) for p in parents}
    results = await asks([Ask(related_personas_schema, (fanout,), shown[p.persona_id],
                              purpose="expand", persona_id=p.persona_id,
                              max_tokens=EXPAND_MAX_TOKENS,
                              check=partial(gate_answer, "people", language,
                                            shown=prompt_text(shown[p.persona_id])))
                          for p in parents])
    round_number = level + 1
    answers = [(parent, position, person,
                *gate_item(person, language=language,
                           shown=prompt_text(shown[parent.persona_id])))
               for parent, result in zip(parents, results, strict=True) if result.value is not None
               for position, person in enumerate(getattr(result.value, "people"))]  # noqa: B009
    near = nearest(linking, [(text, parent.persona_id) for parent, _, _, text, issue in answers
                             if issue is None])
    created: list[Persona] = []
    relations: list[Relation] = []
    rejected: list[dict[str, object]] = []
    marks: list[dict[str, object]] = []
    merges: list[tuple[Persona, str, str, float | None]] = []
    nearest_of: dict[str, list[str]] = {}
    by_parent: dict[str, dict[str, Any]] = {
        p.persona_id: {"persona_id": p.persona_id, "status": "done", "targets": [],
                       "created": [], "merged": 0, "linked": 0} for p in parents}
    for parent, result in zip(parents, results, strict=True):
        marks.append(by_parent[parent.persona_id])
        if result.value is None:
            by_parent[parent.persona_id]["status"] = "failed"
    accepted = 0
    for parent, position, person, text, issue in answers:
        mark = by_parent[parent.persona_id]
        label = " ".join(repair_relation(person.relation).lower().split())[:40]
        if issue is not None:
            rejected.append(rejected_row(
                "expand", issue, {"persona": person.persona, "relation": label,
                                  "hop": parent.hop + 1},
                key=f"{expansion_id}\0{parent.persona_id}\0{position}", run_id=run_id,
                job_id=expansion_id, persona_id=parent.persona_id, task="persona"))
            continue
        near_ones, accepted = near[accepted], accepted + 1
        child = Persona(text=text, source="expand",
                        source_ref=f"{parent.persona_id}/{label}",
                        hop=parent.hop + 1,
                        attributes={"parent": parent.persona_id, "relation": label})
        existing = index.check_and_add(child.persona_id, child.text)
        if existing is not None:
            existing = resolve(linking.aliases, existing)
        elif near_ones and near_ones[0][1] >= linking.threshold:  # the same person, in other words
            existing = near_ones[0][0]
            linking.aliases[child.persona_id] = existing
            merges.append((child, existing, "embedding", near_ones[0][1]))
        if existing is not None:
            mark["merged"] += existing != parent.persona_id
            target = existing
        else:
            created.append(child)
            mark["created"].append(child.persona_id)
            nearest_of[child.persona_id] = [pid for pid, _ in near_ones]
            target = child.persona_id
        if target != parent.persona_id:
            relations.append(Relation(parent.persona_id, target, label, round_number, "expand"))
            mark["targets"].append(target)
    link_results: list[StructuredResult[Any]] = []
    if linking.candidates > 0 and created:
        link_edges, link_results, said_same = await _close_triangles(
            con, asks, parents, created, marks, linking.candidates, round_number, nearest_of)
        relations += link_edges
        by_id = {p.persona_id: p for p in created}
        for child_id, into in said_same.items():
            linking.aliases[child_id] = into
            merges.append((by_id[child_id], into, "model", None))
        created, relations = apply_merges(said_same, created, relations, marks)
    merge_table = merge_rows(expansion_id, len(linking.aliases) - len(merges), round_number, merges)
    passed = {parent.persona_id for parent, _, _, _, issue in answers if issue is None}
    gated = {parent.persona_id: str(issue) for parent, _, _, _, issue in reversed(answers)
             if issue is not None}
    errors = [call_error(result) if result.value is None
              else f"{GATE_ERROR}{gated.get(parent.persona_id, 'no one proposed')}"
              for parent, result in zip(parents, results, strict=True)
              if parent.persona_id not in passed]
    return BatchAnswer(created, relations, rejected, marks, merge_table,
                       [*results, *link_results], errors, len(passed))


def nearest(linking: Linking, asks: list[tuple[str, str]]) -> list[list[tuple[str, float]]]:
    """For each (text, source id), the pool's nearest people: enough for link candidates and to tell
    whether the nearest is the same person.
    """
    if linking.pool is None:
        return [[] for _ in asks]
    k = max(linking.candidates, 1)
    return linking.pool.nearest([text for text, _ in asks], k + 1, [set() for _ in asks])


async def _close_triangles(con: duckdb.DuckDBPyConnection, asks: Asks,
                           parents: list[Persona], created: list[Persona],
                           marks: list[dict[str, Any]], limit: int, round_number: int,
                           nearest_of: dict[str, list[str]] | None = None,
                           ) -> tuple[list[Relation], list[StructuredResult[Any]], dict[str, str]]:
    """Ask each new persona which nearby candidates it knows; returns the edges, the call results and
    new personas that are someone already known. A failed call adds no edge.
    """
    nearest_of = nearest_of or {}
    by_id = {p.persona_id: p for p in created}
    neighbours = hub_neighbours(con, [p.persona_id for p in parents])
    order: list[tuple[dict[str, Any], Persona, Persona, list[str]]] = []
    for parent, mark in zip(parents, marks, strict=True):
        for child_id in mark["created"]:
            candidates = pick_candidates(child_id, parent.persona_id, mark["targets"],
                                         neighbours.get(parent.persona_id, []), limit,
                                         nearest_of.get(child_id, ()))
            if candidates:
                order.append((mark, parent, by_id[child_id], candidates))
    texts = texts_of(con, sorted({c for *_, cs in order for c in cs}),
                     {pid: p.text for pid, p in by_id.items()})
    results = await asks([Ask(
        link_schema, (len(candidates),),
        link_messages(child.text, str(child.attributes.get("relation", "")), parent.text,
                      [texts[c] for c in candidates]),
        purpose=LINK_PURPOSE, persona_id=child.persona_id,
        max_tokens=EXPAND_MAX_TOKENS)
        for _, parent, child, candidates in order]) if order else []
    edges: list[Relation] = []
    said_same: dict[str, str] = {}
    for (mark, _, child, candidates), result in zip(order, results, strict=True):
        if result.value is None:
            continue
        links = getattr(result.value, "links")  # noqa: B009
        same = same_person(candidates, links)
        if same is not None and resolve(said_same, same) != child.persona_id:
            said_same[child.persona_id] = same
            continue
        found = link_relations(child.persona_id, candidates, links, round_number)
        mark["linked"] += len(found)
        edges += found
    return edges, list(results), said_same


