"""Several workers under gunicorn's master (``rero`` with ``workers`` > 1).

The master restarts a worker that dies, whatever killed it, and logs it; HUP re-reads the
profile and replaces the workers gracefully; TERM stops them gracefully. The workers are
gunicorn's aiohttp workers, each serving its own ``create_app(settings)`` on the socket
the master listens on.

Metrics: every worker writes its figures to files in a directory made fresh for this
server (prometheus-client's multiprocess mode), so any worker's ``/metrics`` gives the
totals. prometheus-client reads ``PROMETHEUS_MULTIPROC_DIR`` when it is first imported,
so this module, and the master, import it only after setting it: ``rero.app`` is
imported in each worker, after the fork.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]

from rero.logs import AccessLogger, setup_logging
from rero.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

SHARED_METRICS: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds a worker gives the requests in flight at TERM or HUP; its background tasks
#: then get ``app.STOP_GRACE``.
REQUEST_GRACE: Final = 5.0
#: Seconds the master waits for a stopping worker before it kills it.
GRACE: Final = 15
#: Idle keep-alive connections, as ``web.run_app`` keeps them with one process.
KEEPALIVE: Final = 75.0


def options(settings: Settings) -> dict[str, Any]:
    """gunicorn's settings, from rero's."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": [f"{host}:{settings.port}"],
        "workers": settings.workers,
        "worker_class": "aiohttp.GunicornWebWorker",
        "graceful_timeout": GRACE,
        "loglevel": settings.log_level,
        "logger_class": JsonLogger,
        "child_exit": _child_exit,
        "proc_name": "rero",
        # Else every gunicorn of this user shares one socket under ~/.gunicorn.
        "control_socket_disable": True,
    }


class JsonLogger(Logger):  # type: ignore[misc]
    """gunicorn's own lines (a worker booted, killed, exiting) as rero's JSON lines."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        setup_logging(cfg.loglevel)
        for logger in (self.error_log, self.access_log):
            logger.handlers.clear()
            logger.propagate = True


def _child_exit(server: Any, worker: Any) -> None:
    """A dead worker's open WebSockets leave the gauge; its counts stay in the totals."""
    from prometheus_client import multiprocess  # only now: after the directory is set

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class Master(BaseApplication):  # type: ignore[misc]
    """gunicorn's master, configured from rero's settings instead of its command line."""

    def __init__(self, settings: Settings, config: str | None) -> None:
        self.settings = settings
        self.config = config
        super().__init__(prog="rero")

    def load_config(self) -> None:
        for key, value in options(self.settings).items():
            self.cfg.set(key, value)

    def reload(self) -> None:
        """HUP: the new workers run on the profile as it is now, if it is still valid."""
        try:
            self.settings = load_settings(self.config)
        except SettingsError as e:
            log.error("reload: keeping the running settings", extra={"error": str(e)})
        super().reload()

    def load(self) -> Callable[[], Awaitable[web.AppRunner]]:
        settings = self.settings

        async def runner() -> web.AppRunner:
            from rero.app import create_app  # in the worker, after the fork

            setup_logging(settings.log_level)
            return web.AppRunner(
                create_app(settings),
                access_log_class=AccessLogger,
                keepalive_timeout=KEEPALIVE,
                shutdown_timeout=REQUEST_GRACE,
            )

        return runner


def serve(settings: Settings, config: str | None) -> None:
    """Run the master until TERM or INT; the metrics directory lives exactly as long."""
    directory = tempfile.mkdtemp(prefix="rero-metrics-", dir=os.environ.get(SHARED_METRICS))
    os.environ[SHARED_METRICS] = directory
    master = os.getpid()
    try:
        Master(settings, config).run()
    finally:
        if os.getpid() == master:  # a worker leaves through here too: fork copies the stack
            shutil.rmtree(directory, ignore_errors=True)
