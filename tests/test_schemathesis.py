"""schemathesis against ``/openapi.json`` of a real server: no 5xx, every answer as documented.

Each run generates requests for every operation, with and without a session token,
and checks every response against the document (status, content type, headers, body
schema) and that schema-invalid requests are refused with a 4xx. One check is left
out on purpose: ``positive_data_acceptance`` expects every schema-valid body to be
accepted, but the contract answers 400 to well-formed requests the rules refuse
(an unknown slot, a slot already booked), so it would flag the contract itself.

``SCHEMATHESIS_EXAMPLES`` sets examples per operation (CI: 40) and
``SCHEMATHESIS_SEED`` the seed (CI: fixed, so a run can be replayed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import Server

EXAMPLES = os.environ.get("SCHEMATHESIS_EXAMPLES", "40")
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261124")

pytestmark = pytest.mark.stress  # hundreds of generated requests per run


def token(url: str) -> str:
    body = json.dumps({"username": "user0", "password": "pw-0"}).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback
        url + "/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
        return str(json.load(resp)["token"])


def schemathesis(url: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The CLI, run in ``cwd`` (it keeps a cache folder where it runs)."""
    cli = Path(sys.executable).with_name("schemathesis")
    return subprocess.run(
        [str(cli), "run", url + "/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", EXAMPLES,
         "--seed", SEED, "--no-color", *extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "bearer"])
def test_every_response_matches_the_document(
    server: Server, signed_in: bool, tmp_path: Path
) -> None:
    extra = ("-H", f"Authorization: Bearer {token(server.url)}") if signed_in else ()
    run = schemathesis(server.url, tmp_path, *extra)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "generated" in run.stdout  # it really ran
    assert server.proc.poll() is None
