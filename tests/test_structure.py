"""The walls between layers, kept by a test: no import cycles, transports on the
services only, ``auth/`` off the store, no module too long to read at once."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rero"
MAX_LINES = 350
TRANSPORTS = (
    "rero.views",
    "rero.calendar_views",
    "rero.realtime",
    "rero.access_views",
    "rero.feed_views",
    "rero.hour_views",
    "rero.lab_views",
    "rero.role_views",
    "rero.admin_views",
    "rero.notification_views",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Every rero module ``name`` imports anywhere: type-only and local imports included."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from rero.storage import sqlite`` imports a module; ``import Book`` a name.
            targets = [f"{node.module}.{alias.name}" for alias in node.names]
            targets = [t if t in MODULES else node.module for t in targets]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: imports(name) for name in MODULES}


def cycles() -> Iterator[list[str]]:
    """Each import cycle once, found by depth-first search."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> Iterator[list[str]]:
        if name in path:
            yield [*path[path.index(name) :], name]
            return
        if name in done:
            return
        for target in sorted(GRAPH[name]):
            yield from visit(target, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        yield from visit(name, [])


def test_the_graph_is_read() -> None:
    """Guards the tests below against passing on an empty graph."""
    assert len(MODULES) > 20
    assert "rero.storage" in GRAPH["rero.slots"]
    assert "rero.storage.sqlite" in GRAPH["rero.storage.backends"]
    assert "rero.keys" in GRAPH["rero.views"]


def test_no_import_cycle() -> None:
    assert list(cycles()) == []


def test_a_cycle_would_be_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "rero.errors", {"rero.slots"})
    assert list(cycles())


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_transports_reach_only_the_services(transport: str) -> None:
    others = set(TRANSPORTS) - {transport}
    assert {m for m in GRAPH[transport] if m.startswith("rero.storage")} == set()
    assert GRAPH[transport] & others == set()
    assert "rero.hub" not in GRAPH[transport]  # its public face is app[HUB]
    source = MODULES[transport].read_text()
    assert "STORAGE" not in source
    assert "AUTH]" not in source


def test_auth_checks_credentials_and_never_touches_the_store() -> None:
    for name in (m for m in MODULES if m == "rero.auth" or m.startswith("rero.auth.")):
        assert {m for m in GRAPH[name] if m.startswith("rero.storage")} == set(), name


def test_the_rules_do_not_import_the_web() -> None:
    """Services, the store and the commit know nothing of HTTP or sockets."""
    rules = (
        "rero.slots",
        "rero.identity",
        "rero.commit",
        "rero.board",
        "rero.storage",
        "rero.calendar",
        "rero.resources",
        "rero.bookings",
        "rero.staff",
        "rero.feed",
        "rero.access",
        "rero.grants",
        "rero.feeds",
        "rero.labs",
        "rero.lab_events",
        "rero.hour",
        "rero.scheduler",
        "rero.roles",
        "rero.throttle",
        "rero.admin",
        "rero.usage",
        "rero.notifications",
        "rero.mailer",
        "rero.mail_render",
    )
    for name in rules:
        tree = ast.parse(MODULES[name].read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in modules if m.startswith("aiohttp")}, name
        assert not {m for m in GRAPH[name] if m in (*TRANSPORTS, "rero.keys", "rero.hub")}, name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_is_too_long(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines"
