"""Packaging: one version source, what the wheel ships, and the locks CI and the image use."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import rero
from tests.helpers import ROOT

LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
#: A pinned release: (name, version, environment marker or "") -> its hashes.
Pins = dict[tuple[str, str, str], frozenset[str]]

#: The first release of each runtime dependency past the advisories known to affect it; the
#: floors in setup.cfg must not admit anything older.
ADVISORIES = {
    "aiohttp": (
        "3.14.3",
        "GHSA-4fvr-rgm6-gqmc, pipelined requests queue without limit (3.14.1);"
        " GHSA-mfx4-hv73-q22v, request smuggling via WebSocket upgrade (3.14.2);"
        " GHSA-cq5v-8q36-5273, out-of-bounds read in the C HTTP parser (3.14.3);"
        " and the server-side fixes of 3.13.3 and 3.13.4",
    ),
    "marshmallow": ("3.26.2", "CVE-2025-68480, Schema.load(many=True) CPU exhaustion"),
    "python-json-logger": ("3.3.0", "CVE-2025-27607, 3.2.x required a deleted package name"),
}


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "setup.cfg")
    return config


def _requirements(text: str) -> list[Requirement]:
    return [Requirement(line) for line in text.strip().splitlines() if line.strip()]


def _runtime() -> list[Requirement]:
    config = _setup_cfg()
    return _requirements(config["options"]["install_requires"]) + _requirements(
        config["options.extras_require"]["postgres"]
    )


def _pins(path: Path) -> Pins:
    """Every entry of a lock written by `tox run -e lock` (uv pip compile --generate-hashes)."""
    pins: Pins = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        entry = line.split("#")[0]  # hashes are hex: a `#` starts a comment
        if entry.strip():
            requirement, *hashes = entry.split("--hash=")
            spec, _, marker = requirement.partition(";")
            name, version = spec.strip().split("==")
            key = (canonicalize_name(name), version, marker.strip())
            pins[key] = frozenset(h.strip() for h in hashes)
    return pins


def _satisfied(requirements: list[Requirement], pins: Pins) -> list[str]:
    """The requirements that the lock has no pin for, or pins outside their range."""
    missing = []
    for req in requirements:
        versions = [v for (name, v, _) in pins if name == canonicalize_name(req.name)]
        if not versions or not all(req.specifier.contains(v, prereleases=True) for v in versions):
            missing.append(f"{req} (locked: {versions})")
    return missing


def test_version_has_one_source() -> None:
    assert _setup_cfg()["metadata"]["version"] == "attr: rero.__version__"
    assert Version(rero.__version__)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built offline from a copy of the sources whose __version__ says 9.8.7."""
    pytest.importorskip(
        "setuptools", minversion="70.1", reason="builds wheels alone; requirements-dev.lock has it"
    )
    src = tmp_path_factory.mktemp("src")
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rero", src / "rero", ignore=shutil.ignore_patterns("__pycache__"))
    init = src / "rero" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{rero.__version__}"', '"9.8.7"'))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_takes_its_version_from_the_package(wheel: zipfile.ZipFile) -> None:
    metadata = wheel.read("rero-9.8.7.dist-info/METADATA").decode()
    assert "\nVersion: 9.8.7\n" in metadata


def test_the_wheel_ships_py_typed_the_board_and_the_license(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert {"rero/py.typed", "rero/static/board.js"} <= names
    console = {f"rero/static/admin.{ext}" for ext in ("html", "js", "css")}
    console.add("rero/static/session.js")
    vendored = {f"rero/static/vendor/uPlot.{n}" for n in ("iife.min.js", "min.css", "LICENSE")}
    assert console | vendored <= names, sorted(names)
    assert {"rero/mail_templates/message.txt", "rero/mail_templates/message.html"} <= names
    licenses = [n for n in names if n.startswith("rero-9.8.7.dist-info/") and "LICENSE" in n]
    assert licenses, sorted(names)
    assert wheel.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
    metadata = wheel.read("rero-9.8.7.dist-info/METADATA").decode().splitlines()
    assert "License: MIT" in metadata


def test_license_is_mit_naming_the_authors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the rero authors\n")
    assert "WITHOUT WARRANTY OF ANY KIND" in text
    assert (ROOT / "rero" / "py.typed").exists()


@pytest.mark.parametrize("package", ADVISORIES)
def test_floors_are_past_known_advisories(package: str) -> None:
    fixed, advisories = ADVISORIES[package]
    (req,) = [r for r in _runtime() if canonicalize_name(r.name) == package]
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert floors, f"{req}: no floor"
    assert max(floors) >= Version(fixed), f"{req} admits releases before {fixed}: {advisories}"


@pytest.mark.parametrize("lock", [LOCK, DEV_LOCK], ids=lambda p: p.name)
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    pins = _pins(lock)
    assert len(pins) > 10
    assert [key for key, hashes in pins.items() if not hashes] == []
    assert all(h.startswith("sha256:") for hashes in pins.values() for h in hashes)


def test_the_image_lock_covers_the_package_and_the_postgres_extra() -> None:
    assert _satisfied(_runtime(), _pins(LOCK)) == []
    assert "asyncpg" in {name for (name, _, _) in _pins(LOCK)}


def test_the_dev_lock_covers_every_extra_and_the_tools() -> None:
    extras = _setup_cfg()["options.extras_require"]
    tools = [
        line.split("#")[0]
        for line in (ROOT / "requirements-dev.in").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    wanted = _runtime() + [r for name in extras for r in _requirements(extras[name])]
    assert _satisfied(wanted + _requirements("\n".join(tools)), _pins(DEV_LOCK)) == []


def test_ci_tests_what_the_image_runs() -> None:
    """Each release of the image's lock is in the dev lock, with the same hashes (its marker
    may be wider: the tools need tomli on every Python)."""
    dev = {(name, version): hashes for (name, version, _), hashes in _pins(DEV_LOCK).items()}
    image = {(name, version): hashes for (name, version, _), hashes in _pins(LOCK).items()}
    assert {key: hashes for key, hashes in image.items() if dev.get(key) != hashes} == {}


def test_tox_installs_the_lock_with_hashes_and_nothing_else() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    assert tox["testenv"]["deps"].strip() == "-r requirements-dev.lock"
    assert "--no-deps" in tox["testenv"]["install_command"].split()
    for env in tox.sections():
        if env.startswith("testenv:") and env != "testenv:lock":
            assert "deps" not in tox[env], f"{env} installs outside the lock"
            assert "install_command" not in tox[env], env


def test_the_image_installs_the_lock_with_hashes() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile
    assert "requirements.lock" in dockerfile
    # Only the production profile goes in: no fake users to select by accident.
    assert "COPY config/production.toml" in dockerfile
    assert "COPY config/ " not in dockerfile
