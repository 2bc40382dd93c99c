"""What the bench scripts share: free ports, server processes started from the project root
and waited for, resident memory and CPU time, fake users, resources for a profile, and the
PASS/FAIL ending of a pass/fail run.

Everything runs on 127.0.0.1, and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
RERO = [sys.executable, "-m", "rero"]


def free_port() -> int:
    """A loopback port nobody holds now, for a server a bench is about to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants (the workers)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return total + sum(rss_kib(int(child)) for child in children)


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` and all its descendants have run, every thread counted (the
    scheduler's nanosecond figure in ``schedstat``, not ``stat``'s 10 ms ticks), so a few
    changes' worth of fan-out can be told apart."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return total / 1e9 + sum(cpu_seconds(int(child)) for child in children)


def wait_ready(url: str, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """Return once ``url/health`` answers; a server that exits first, or is still silent
    after ``seconds``, is an error, so a bench never hangs on a broken start."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1):  # noqa: S310 - loopback
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}") from None
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL after 10 s: a stuck server must not outlive its bench."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serve(argv: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` from the project root (so ``-m bench.NAME`` and ``-m rero`` resolve) with
    ``env`` added to this environment, once it answers on ``port``; stopped at the end."""
    proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        stop(proc)


def serve_bare(
    port: int, bodies: Path | None = None
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The bare aiohttp ceiling (bench/bare.py) on ``port``; it serves each file in the
    folder ``bodies`` as ``GET /body/NAME``."""
    extra = [str(bodies)] if bodies else []
    return serve([sys.executable, "-m", "bench.bare", str(port), *extra], {}, port)


def write_users(path: Path, n: int) -> Path:
    """A fake-auth users file: ``u{i}`` / ``p{i}``, name ``U{i}``, SRN ``S{i}``, for i < n."""
    path.write_text(
        "".join(
            f'[[users]]\nusername = "u{i}"\npassword = "p{i}"\nname = "U{i}"\nsrn = "S{i}"\n'
            for i in range(n)
        )
    )
    return path


def toml_value(value: object) -> str:
    """A str, int, bool or list of them as TOML (``json`` writes all four alike)."""
    return json.dumps(value)


def resources_toml(resources: list[dict[str, object]]) -> str:
    """``[[resources]]`` tables of a profile, one per dict, keys as the issue names them."""
    return "".join(
        "[[resources]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in r.items())
        for r in resources
    )


def rero_env(port: int, folder: Path, users: int, profile: str = "") -> dict[str, str]:
    """The environment of a bench's rero: loopback, fake auth for ``users`` users (written to
    ``folder/users.toml``), the SQLite file ``folder/rero.db``, no sign-in limits, and
    ``profile`` (more TOML: keys first, then tables such as ``[[resources]]``)."""
    # A bench measures throughput: the per-student sign-in limits would refuse its logins.
    path = folder / "bench.toml"
    path.write_text("max_logins_per_user_per_minute = 0\nmax_sessions_per_user = 0\n" + profile)
    return {
        "RERO_CONFIG": str(path),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "AUTH_BACKEND": "fake",
        "FAKE_USERS_FILE": str(write_users(folder / "users.toml", users)),
        "DATABASE_PATH": str(folder / "rero.db"),
        "LOG_LEVEL": "warning",
    }


@contextlib.contextmanager
def serve_rero(
    port: int,
    users: int,
    env: dict[str, str] | None = None,
    folder: Path | None = None,
    profile: str = "",
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m rero`` as :func:`rero_env` sets it up, ``env`` added or overriding
    (``WORKERS``, ``LOG_LEVEL``, ``DATABASE_URL``), in a fresh temporary folder unless
    ``folder`` is given (a restart on the same file), ``profile`` added to its profile."""
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = {**rero_env(port, folder, users, profile), **(env or {})}
        yield stack.enter_context(serve(RERO, env, port))


def verdict(result: dict[str, Any], ok: bool) -> NoReturn:
    """Print ``result`` as JSON, then PASS or FAIL, and exit 0 or 1, so CI can gate on it."""
    print(json.dumps(result))
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)
