"""The rows of messages delivered to a column shard, built a pool at a time rather than a message
at a time.

An addressed kind is asked once per (archetype, kind); each message fills the pool's answer in
with its sender and receiver (``Task.addressed_content``). That is done once per pool with two
placeholder names, and the names are then put into the pool's JSON text by Arrow for every
message at once. A task whose content or text depends on the names beyond putting them in
(checked against one real message of each pool) is filled in a message at a time, as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personahub.sim.population_plan import PoolAnswer
from personahub.tasks import emission_task

#: characters ``json.dumps(..., ensure_ascii=False)`` escapes in a string
_ESCAPED = r'[\x00-\x1f"\\]'
_SPEAKER, _LISTENER = "\x00speaker\x00", "\x00listener\x00"
_HOLES = re.compile("(" + re.escape(json.dumps(_SPEAKER)) + "|"
                    + re.escape(json.dumps(_LISTENER)) + ")")


def json_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Return each string as JSON text, as ``json.dumps(value, ensure_ascii=False)`` writes it
    (null: ``null``)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) and pc.any(pc.match_substring_regex(values, _ESCAPED)).as_py():
        return pa.array([json.dumps(v, ensure_ascii=False) for v in values.to_pylist()],
                        pa.string())
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    return pc.fill_null(quoted, "null")


def addressed_rows(answers: Sequence[PoolAnswer], pools: np.ndarray,
                   speakers: pa.Array | pa.ChunkedArray,
                   listeners: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """Return each message's stored content (JSON text) and the text its receiver hears.

    Args:
        answers: the step's pooled answers (``StepClose.pools``).
        pools: each message's index into ``answers``.
        speakers, listeners: each message's sender and receiver persona ids.
    """
    if isinstance(speakers, pa.ChunkedArray):
        speakers = speakers.combine_chunks()
    if isinstance(listeners, pa.ChunkedArray):
        listeners = listeners.combine_chunks()
    order = np.argsort(pools, kind="stable")
    sorted_pools = pools[order]
    starts = np.flatnonzero(np.r_[True, sorted_pools[1:] != sorted_pools[:-1]])
    ends = np.r_[starts[1:], order.size]
    contents: list[pa.Array] = []
    said: list[pa.Array] = []
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        rows = pa.array(order[lo:hi])
        content, text = _pool_rows(answers[int(sorted_pools[lo])], speakers.take(rows),
                                   listeners.take(rows))
        contents.append(content)
        said.append(text)
    if not contents:
        return pa.array([], pa.string()), pa.array([], pa.string())
    back = pa.array(np.argsort(order, kind="stable"))
    return (pa.concat_arrays(contents).take(back), pa.concat_arrays(said).take(back))


def _pool_rows(answer: PoolAnswer, speakers: pa.Array,
               listeners: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Return the content and heard text of one pool's messages (the pool's JSON content
    parsed once: ``Task.addressed_content`` builds new content and leaves what it reads)."""
    task = emission_task(answer.kind)
    pooled_text = answer.text or ""
    n = len(speakers)
    pooled = json.loads(answer.content or "{}")
    content, text = task.addressed_content(pooled, pooled_text, _SPEAKER, _LISTENER)
    template = _dumps(content)
    pieces = _HOLES.split(template)
    if "\x00" not in text and "\\u0000" not in "".join(pieces[0::2]):
        args = [json_strings(speakers) if piece == json.dumps(_SPEAKER)
                else json_strings(listeners) if piece == json.dumps(_LISTENER)
                else pa.scalar(piece, pa.string())
                for piece in pieces if piece]
        if not any(isinstance(a, pa.Array) for a in args):
            filled = pa.repeat(pa.scalar(template, pa.string()), n)
        else:
            filled = pc.binary_join_element_wise(*args, "")
        first = task.addressed_content(pooled, pooled_text, str(speakers[0]),
                                       str(listeners[0]))
        if _dumps(first[0]) == filled[0].as_py() and first[1] == text:
            return filled, pa.repeat(pa.scalar(text, pa.string()), n)
    rows = [task.addressed_content(pooled, pooled_text, str(s), str(listener))
            for s, listener in zip(speakers.to_pylist(), listeners.to_pylist(), strict=True)]
    return (pa.array([_dumps(c) for c, _ in rows], pa.string()),
            pa.array([t for _, t in rows], pa.string()))


def _dumps(content: object) -> str:
    return json.dumps(content, ensure_ascii=False, default=str)
