"""Counts of each operation's outcome, for ``/stats`` and ``/metrics``."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from rero.errors import ReroError


@cache
def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Outcomes(Counter[tuple[str, str]]):
    """(action, outcome) -> count; shared by the services that count."""

    @contextmanager
    def counted(self, action: str) -> Iterator[None]:
        """Count one operation's outcome: ``success`` or the domain error's name."""
        try:
            yield
        except ReroError as e:
            self[action, _snake(type(e).__name__)] += 1
            raise
        self[action, "success"] += 1
