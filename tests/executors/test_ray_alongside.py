"""``RayCaller.alongside``: one actor pool answering for a job's other model clients (an
evaluation's other solvers, scored models and judge), each actor building such a client from
its settings. Without Ray: the actor class is used as a plain object and the pool's actors are
stand-ins that answer in this process (``tests/pipelines/test_evaluate_ray.py`` runs it on Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from personahub.core.errors import PersonahubError
from personahub.executors.ray_actors import RayCaller, _CallActor
from personahub.models.client import make_client
from personahub.pipelines.evaluate import solver_settings
from personahub.pipelines.prompts.evaluate import SOLVE_PURPOSE, solve_messages, solve_schema

PROBLEMS = [f"What is {n} plus {n + 3}?" for n in range(8)]


class _Remote:
    """A stand-in for an actor handle: ``answer.remote(calls)`` asks the actor here."""

    def __init__(self, actor: _CallActor, sent: list[list[Any]]) -> None:
        self.actor, self.sent = actor, sent
        self.answer = self
        self.remote = self._remote

    async def _remote(self, calls: list[Any]) -> list[tuple[Any, ...]]:
        self.sent.append(list(calls))
        return await self.actor.answer(calls)


async def _answers(caller: Any) -> list[str]:
    schema = solve_schema("answer")
    results = [await caller.structured(schema, solve_messages(p, "answer"), purpose=SOLVE_PURPOSE)
               for p in PROBLEMS]
    return [str(r.value.final_answer) for r in results]


async def test_a_pool_answers_for_another_client_with_that_clients_settings() -> None:
    own, other = solver_settings("offline?seed=1"), solver_settings("offline?seed=2")
    driver_own, driver_other = make_client(own), make_client(other)
    actor = _CallActor(own)
    sent: list[list[Any]] = []
    pool = RayCaller(driver_own, [_Remote(actor, sent)], run_id="t")

    view = pool.alongside(driver_other)
    assert pool.alongside(driver_other) is view  # one caller per client
    assert pool.alongside(driver_own) is pool
    assert view.label == driver_other.label and view.stats is driver_other.stats

    local_other = await _answers(make_client(other))
    local_own = await _answers(make_client(own))
    assert local_other != local_own  # the seeds differ: the pool's client would not do
    assert await _answers(view) == local_other
    assert await _answers(pool) == local_own
    # the other client's calls carried its settings; the pool's own carried none
    assert {call[-1] for call in sent[0]} == {driver_other.settings}
    assert {call[-1] for call in sent[-1]} == {None}
    assert len(actor.others) == 1  # built once on the worker, for all of its calls
    assert driver_other.stats.ok == len(PROBLEMS)  # counted where a local run counts them


def test_a_client_carrying_a_credential_is_refused() -> None:
    own = solver_settings("offline")
    pool = RayCaller(make_client(own), [], run_id="t")
    secret = make_client(solver_settings("http://127.0.0.1:9/v1?model=m&api_key=sk-test"))
    with pytest.raises(PersonahubError, match="carries a credential"):
        pool.alongside(secret)
