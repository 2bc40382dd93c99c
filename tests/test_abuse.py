"""The abusive-client run's short form: never-reading clients, an idle socket and a
connection storm beside well-behaved clients, who must all still be served. The full run
(200 never-readers, 2,000 attempts per second for 5 s) is ``python -m bench.abuse``."""

from __future__ import annotations

import pytest

from bench.abuse import abuse, passed

pytestmark = pytest.mark.stress  # several seconds of abusive clients


async def test_abusers_do_not_cost_anyone_else_their_service() -> None:
    result = await abuse(clients=20, never_read=20, storm_rate=200, storm_seconds=2, seconds=4)
    assert passed(result), result
    storm = result["storm"]
    assert storm["attempts"] == 400
    assert storm["answered"] == 400, storm  # under the connection limit: every one answered
