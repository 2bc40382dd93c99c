# rero in a container: python -m rero, configured by the same environment variables.
# BASE_IMAGE: any image with python3 and its venv module (default: the official slim one).
# PIP_OPTIONS: extra pip options, e.g. "--no-index --find-links /tmp/wheelhouse" to install
# from wheels put in ./wheelhouse instead of the package index.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ARG PIP_OPTIONS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    RERO_CONFIG=/app/config/production.toml \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATABASE_PATH=/data/rero.db

WORKDIR /app

# Dependencies first, in a layer of their own: they change less often than the code.
COPY setup.cfg ./
COPY wheelhouse/ /tmp/wheelhouse/
# hadolint ignore=DL3042
RUN python3 -m venv /opt/venv \
    && python3 -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(c['options']['install_requires'])" > /tmp/requirements.txt \
    && pip install --no-cache-dir ${PIP_OPTIONS} -r /tmp/requirements.txt \
    && rm -rf /tmp/wheelhouse /tmp/requirements.txt

# The service, run as a user without privileges, its database on a volume.
COPY config/ config/
COPY rero/ rero/
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin rero \
    && mkdir -p /data && chown rero /data
USER 10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["python", "-m", "rero"]
