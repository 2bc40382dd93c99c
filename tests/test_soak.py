"""The soak's short form: 100 clients for 15 s, a change every 100 ms, 5% reconnecting
every 3 s. The full run (1,000 clients, 10 minutes) is ``python -m bench.soak``."""

from __future__ import annotations

import pytest

from bench.soak import soak

pytestmark = pytest.mark.stress  # 15 s of 100 clients


async def test_short_soak_ends_clean_on_the_final_board() -> None:
    result = await soak(clients=100, seconds=15, period=3, warmup=5)
    assert result["failures"] == []
    assert result["requests"] >= 100  # the driver kept its pace
    assert result["reconnects"] == 20
