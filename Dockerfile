# rero in a container: the `rero` command from a wheel of this package, its dependencies
# (the postgres extra included) exactly as requirements.lock pins and hashes them.
# BASE_IMAGE: any image with python3 and its venv module (default: the official slim one).
# PIP_OPTIONS: extra pip options, e.g. "--no-index --find-links /tmp/wheelhouse" to install
# from wheels put in ./wheelhouse instead of the package index (hashes are checked either way).
ARG BASE_IMAGE=python:3.12-slim

# Stage 1: the wheel, built from the sources.
FROM ${BASE_IMAGE} AS wheel
ARG PIP_OPTIONS=""
WORKDIR /src
COPY wheelhouse/ /tmp/wheelhouse/
COPY pyproject.toml setup.cfg README.md LICENSE ./
COPY rero/ rero/
# hadolint ignore=DL3042
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps ${PIP_OPTIONS} -w /dist .

# Stage 2: the service.
FROM ${BASE_IMAGE}
ARG PIP_OPTIONS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    RERO_CONFIG=/app/config/production.toml \
    PORT=8000 \
    DATABASE_PATH=/data/rero.db

WORKDIR /app

# Dependencies first, in a layer of their own: only the pinned releases, each checked
# against its hash, nothing resolved at build time.
COPY requirements.lock /tmp/requirements.lock
COPY wheelhouse/ /tmp/wheelhouse/
# hadolint ignore=DL3042
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --require-hashes --no-deps ${PIP_OPTIONS} -r /tmp/requirements.lock \
    && rm -rf /tmp/wheelhouse /tmp/requirements.lock

# The package, without dependencies of its own: `pip check` proves the lock covered them.
COPY --from=wheel /dist/ /tmp/dist/
# hadolint ignore=DL3042
RUN pip install --no-cache-dir --no-deps --no-index /tmp/dist/*.whl \
    && pip check \
    && rm -rf /tmp/dist

# Only the production profile: no profile with fake users to select by accident (fake auth
# also refuses to listen on a non-loopback address; see allow_fake_auth_on_network).
COPY config/production.toml config/production.toml
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin rero \
    && mkdir -p /data && chown rero /data
USER 10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["rero", "serve"]
