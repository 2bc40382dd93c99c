"""The waiting helpers themselves: a wait that never ends, or never fails, would hide
the very breakage the tests exist to catch."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers import StartingGate, eventually, wait_until


async def test_eventually_returns_once_true() -> None:
    flips = asyncio.get_running_loop().time() + 0.05
    await eventually(lambda: asyncio.get_running_loop().time() >= flips, 2)


async def test_eventually_fails_with_what_it_waited_for() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"not true within 0.1 s: the moon"):
        await eventually(lambda: False, 0.1, what="the moon")
    assert time.monotonic() - started < 2


async def test_eventually_names_the_predicate_by_default() -> None:
    ready: list[int] = []
    with pytest.raises(AssertionError, match=r"eventually\(lambda: ready, 0\.05\)"):
        await eventually(lambda: ready, 0.05)


async def test_eventually_awaits_async_predicates_and_bounds_a_hanging_one() -> None:
    calls = []

    async def second_call() -> bool:
        calls.append(1)
        return len(calls) >= 2

    await eventually(second_call, 2)

    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    started = time.monotonic()
    with pytest.raises(AssertionError, match="hangs"):
        await eventually(hangs, 0.1, what="hangs")
    assert time.monotonic() - started < 2


def test_wait_until_fails_on_its_deadline() -> None:
    wait_until(lambda: True, 0.1, what="at once")
    with pytest.raises(AssertionError, match="never"):
        wait_until(lambda: False, 0.1, what="never")


async def test_the_gate_opens_only_when_every_racer_waits() -> None:
    gate = StartingGate(3)
    went: list[int] = []

    async def racer(i: int) -> None:
        await gate.wait()
        went.append(i)

    tasks = [asyncio.create_task(racer(i)) for i in range(2)]
    with pytest.raises(AssertionError, match="all 3 racers at the gate"):
        await gate.open(0.05)
    assert went == []
    tasks.append(asyncio.create_task(racer(2)))
    await gate.open()
    await asyncio.gather(*tasks)
    assert sorted(went) == [0, 1, 2]
