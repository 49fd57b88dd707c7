"""The lowerable concurrency limit: order, limit, lowering, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from personahub.models.concurrency_limit import ConcurrencyLimit


def test_never_more_than_the_limit_and_lowering_takes_effect() -> None:
    async def main() -> list[int]:
        limit = ConcurrencyLimit(4)
        peaks: list[int] = []
        gate = asyncio.Event()

        async def work(i: int) -> None:
            async with limit:
                peaks.append(limit.active)
                if i == 3:
                    assert limit.lower() == 2  # four in flight: half
                    gate.set()
                await gate.wait()
                await asyncio.sleep(0)

        await asyncio.gather(*[work(i) for i in range(12)])
        return peaks

    peaks = asyncio.run(main())
    assert max(peaks[:4]) == 4
    assert max(peaks[4:]) <= 2


def test_waiters_are_served_in_arrival_order() -> None:
    async def main() -> list[int]:
        limit = ConcurrencyLimit(1)
        order: list[int] = []

        async def work(i: int) -> None:
            async with limit:
                order.append(i)
                await asyncio.sleep(0)

        await asyncio.gather(*[work(i) for i in range(6)])
        return order

    assert asyncio.run(main()) == list(range(6))


def test_a_cancelled_waiter_gives_its_place_back() -> None:
    async def main() -> int:
        limit = ConcurrencyLimit(1)
        async with limit:
            waiter = asyncio.create_task(limit.__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
        async with limit:
            return limit.active

    assert asyncio.run(main()) == 1


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimit(0)
