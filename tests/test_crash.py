"""The crash test's short form: SIGKILL during a storm loses nothing acknowledged."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.crash import check, crash_once
from rero.storage.sqlite import open_sqlite
from tests.helpers import UPGRADE, book, one


@pytest.mark.stress
@pytest.mark.parametrize("seed", [1, 2])
async def test_sigkill_during_a_storm(tmp_path: Path, seed: int) -> None:
    assert await crash_once(tmp_path, clients=100, seed=seed) == []


async def test_the_check_can_fail(tmp_path: Path) -> None:
    """The checker itself: a lost acknowledgement and an unexplained change are caught."""
    async with open_sqlite(str(tmp_path / "rero.db"), UPGRADE) as storage:
        await one(storage, book(5, "S1", "t"))
    attempted = Counter({(5, "S1", "booked"): 1, (6, "S2", "booked"): 1})
    assert check(tmp_path / "rero.db", Counter({(5, "S1", "booked"): 1}), attempted) == []
    lost = check(tmp_path / "rero.db", Counter({(6, "S2", "booked"): 1}), attempted)
    assert lost == ["acknowledged but not recorded: (6, 'S2', 'booked') x1"]
    unexplained = check(tmp_path / "rero.db", Counter(), Counter())
    assert unexplained == ["recorded more than attempted: (5, 'S1', 'booked')"]
