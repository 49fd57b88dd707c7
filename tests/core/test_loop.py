"""The run loop's garbage-collector setting is scoped to the model calls and nests."""

from __future__ import annotations

import gc

from personahub.core import loop as run_loop


def test_steady_gc_freezes_and_restores_and_nests() -> None:
    before = gc.get_threshold()
    run_loop.steady_gc_start()
    try:
        assert gc.get_threshold()[0] >= run_loop.YOUNG_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
        run_loop.steady_gc_start()  # nested (a job loop inside run): no second freeze
        run_loop.steady_gc_stop()
        assert gc.get_threshold()[0] >= run_loop.YOUNG_GC_THRESHOLD
    finally:
        run_loop.steady_gc_stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_run_restores_the_collector_after_its_coroutine() -> None:
    before = gc.get_threshold()

    async def inside() -> tuple[int, int, int]:
        return gc.get_threshold()

    assert run_loop.run(inside())[0] >= run_loop.YOUNG_GC_THRESHOLD
    assert gc.get_threshold() == before
