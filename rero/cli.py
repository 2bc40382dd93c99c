"""The ``rero`` command: ``serve`` (the default) and operator commands.

Every failure is one line on stderr and a non-zero exit: 2 for a bad setting or
usage, 1 for an operation that could not be done.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from aiohttp import web

from rero import grants, workers
from rero.logs import AccessLogger, setup_logging
from rero.setting_checks import shown
from rero.settings import Settings, SettingsError, load_settings
from rero.storage import backends

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rero", description="ReRo lab slot booking service")
    parser.add_argument("--config", help="TOML profile (default: $RERO_CONFIG, else defaults)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default=argparse.SUPPRESS, help="TOML profile")
        return sub

    command("serve", "serve the API (the default)")
    command("check-config", "print the effective settings, secrets masked; exit 2 if invalid")
    command(
        "backup", "copy the SQLite database consistently, even while the server runs"
    ).add_argument("dest", help="file to write the copy to")
    command(
        "export",
        "write bookings, blackouts, waitlists, suspensions and audit events to stdout"
        " (SQLite or PostgreSQL)",
    ).add_argument("--format", choices=("json", "csv"), default="json", help="output format (json)")
    keys = command("keys", "make keys: grant signing keys, lab API keys")
    kinds = keys.add_subparsers(dest="kind", metavar="KIND", required=True)
    kinds.add_parser(
        "generate", help="write a new Ed25519 grant signing key (PEM, mode 0600); print its kid"
    ).add_argument("path", help="file to write the key to (never overwritten)")
    kinds.add_parser("lab", help="print a new lab API key and its api_key_sha256")
    return parser


def masked(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, every password hidden."""
    return {key: shown(key, value) for key, value in asdict(settings).items()}


def _write_csv(rows: list[dict[str, object]]) -> None:
    if rows:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def keys(kind: str, path: str) -> int:
    """``rero keys``: needs no settings, so it works before there is a profile."""
    if kind == "lab":
        key, digest = grants.lab_key()
        print(f"lab API key (give it to the lab, keep it nowhere else): {key}")
        print(f'for its [resources.lab] table: api_key_sha256 = ["{digest}"]')
        return 0
    try:
        made = grants.generate_key(path)
    except OSError as e:
        print(f"rero: keys generate: {path}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"wrote {path}: kid {made.kid}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "keys":
        return keys(args.kind, getattr(args, "path", ""))
    try:
        settings = load_settings(args.config)
        if command in ("serve", "check-config"):
            grants.Signer.load(settings)  # a bad key file: one line here, not a traceback
    except SettingsError as e:
        print(f"rero: {e}", file=sys.stderr)
        return 2
    try:
        if command == "check-config":
            print(json.dumps(masked(settings), indent=2))
        elif command == "backup":
            result = asyncio.run(
                backends.backup(settings.database_path, settings.database_url, args.dest)
            )
            if result != "ok":
                print(f"rero: backup integrity check failed: {result}", file=sys.stderr)
                return 1
            print(f"backed up {settings.database_path} to {args.dest}: integrity ok")
        elif command == "export":
            data = asyncio.run(backends.export(settings.database_path, settings.database_url))
            if args.format == "json":
                print(json.dumps(data, indent=2))
            else:
                for n, rows in enumerate(data.values()):
                    if n:
                        print()
                    _write_csv(rows)
        else:
            serve(settings, args.config)
    except (OSError, sqlite3.Error, backends.Unsupported) as e:
        print(f"rero: {command}: {e}", file=sys.stderr)
        return 1
    return 0


def serve(settings: Settings, config: str | None = None) -> None:
    """One process, or ``workers`` processes under gunicorn's master (``rero.workers``)."""
    if settings.workers == 1:
        _serve_one(settings)
    else:
        workers.serve(settings, config)


def _serve_one(settings: Settings) -> None:
    # Here, not at the top: with several workers, prometheus-client must not be imported
    # before rero.workers has set its directory.
    from rero.app import create_app

    setup_logging(settings.log_level)
    log.info("starting", extra={"host": settings.host, "port": settings.port, "pid": os.getpid()})
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log_class=AccessLogger,
        # Called once the socket listens: then the URL is true.
        print=lambda _: announce(settings),
        # Seconds requests still in flight get at SIGTERM before they are cancelled
        # (aiohttp's default is 60); the WebSockets' close has its own 3 s before this.
        shutdown_timeout=5.0,
    )


def url_of(settings: Settings) -> str:
    """Where a browser on this machine reaches the server."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(settings.host)
    if host is None:
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def announce(settings: Settings) -> None:
    """One plain line on stdout for the person who started it, and the same as JSON."""
    url = url_of(settings)
    print(f"rero is serving on {url} - the board: {url}/board", flush=True)
    log.info("serving", extra={"url": url})
