"""The ``rero`` command: ``serve`` (the default)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from rero.app import create_app
from rero.logs import AccessLogger, setup_logging
from rero.settings import SettingsError, load_settings

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rero", description="ReRo lab slot booking service")
    parser.add_argument("--config", help="TOML profile (default: $RERO_CONFIG, else defaults)")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="serve the API (the default)")
    serve.add_argument("--config", default=argparse.SUPPRESS, help="TOML profile")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as e:
        print(f"rero: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    log.info("starting", extra={"host": settings.host, "port": settings.port})
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        print=None,
    )
    return 0
