"""Every typed key of the application's state, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from rero.auth.cache import CachedAuth
from rero.settings import Settings
from rero.slots import SlotService
from rero.storage import Storage

if TYPE_CHECKING:  # these modules import the keys
    from rero.metrics import Metrics
    from rero.realtime import Hub

SETTINGS: Final = web.AppKey("settings", Settings)
STORAGE: Final = web.AppKey("storage", Storage)
AUTH: Final = web.AppKey("auth", CachedAuth)
SERVICE: Final = web.AppKey("service", SlotService)
HUB: Final[web.AppKey[Hub]] = web.AppKey("hub")
METRICS: Final[web.AppKey[Metrics]] = web.AppKey("metrics")
