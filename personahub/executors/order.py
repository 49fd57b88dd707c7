"""Answers that come back from workers in any order, put back into their batches' order."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from personahub.core.errors import PersonahubError

if TYPE_CHECKING:
    import numpy as np


def in_batch_order(pieces: Iterable[Mapping[str, np.ndarray]], sizes: Sequence[int]) -> Iterator[list[Any]]:
    """Answers regrouped into their batches, each yielded once it and those before are complete.

    An answer given twice (a retried task) counts once; a late one is dropped."""
    pending: dict[int, bytes] = {}
    start = 0
    batch = 0
    for piece in pieces:
        for index, blob in zip(piece["index"], piece["answer"], strict=True):
            if int(index) >= start:
                pending[int(index)] = blob
        while batch < len(sizes) and all(i in pending for i in range(start, start + sizes[batch])):
            yield [pickle.loads(pending.pop(i)) for i in range(start, start + sizes[batch])]
            start += sizes[batch]
            batch += 1
    if batch < len(sizes):
        raise PersonahubError(f"the executor returned no answer for batch {batch + 1} of {len(sizes)}")
