"""Helpers most job specs' plan and commit share: undone items in batches, and a batch's answers
sorted into kept rows and errors. One copy, so progress, end status and the failure policy cannot
drift apart between specs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from personahub.core.contracts import CarriesCalls
from personahub.core.kernel import BatchOutcome, JobContext, iter_batches

T = TypeVar("T")  # one item a job asks about
A = TypeVar("A", bound=CarriesCalls)  # one answer, carrying its calls
K = TypeVar("K")  # what an answer keeps (a row, a persona)


def remaining(ctx: JobContext[Any], items: Sequence[T], done: Collection[Any],
              key: Callable[[T], object], size: int) -> Iterator[Sequence[T]]:
    """Return the items whose key is not yet done, in batches, and set the job's total and done_before counts.
    """
    todo = [item for item in items if key(item) not in done]
    ctx.total = len(items)
    ctx.done_before = len(items) - len(todo)
    return iter(list(iter_batches(todo, size)))


def sorted_answers(answers: Sequence[A], keep: Callable[[A], K | None],
                   error: Callable[[A], str | None]) -> tuple[list[K], list[str | None]]:
    """Return what each answer keeps and, for those that keep nothing, their errors, in the answers' order.
    """
    kept: list[K] = []
    errors: list[str | None] = []
    for answer in answers:
        value = keep(answer)
        if value is None:
            errors.append(error(answer))
        else:
            kept.append(value)
    return kept, errors


def answered(batch: Sequence[object], answers: Sequence[A], keep: Callable[[A], K | None],
             error: Callable[[A], str | None], *, table: str | None = None,
             then: Callable[[list[K]], object] | None = None) -> BatchOutcome:
    """Return a batch's outcome: its kept rows (for `table`, or passed to `then` inside the transaction),
    its calls, counts, and one error per answer that kept nothing.
    """
    kept, errors = sorted_answers(answers, keep, error)
    rows = {table: cast(Sequence[Mapping[str, object]], kept)} if table is not None else {}
    return BatchOutcome(rows=rows,
                        calls=answers, asked=len(batch), kept=len(kept), errors=errors,
                        then=None if then is None else lambda: then(kept))
