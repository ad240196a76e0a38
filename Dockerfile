# syntax=docker/dockerfile:1
# One image for the four services (and the SMS gateway sink of deploy/local/). The service is
# chosen by the command, as in docker-compose.yml:
#   faststream run --factory services.<name>.app:create_app --host 0.0.0.0 --port 8000
#   python -m deploy.local.sms_sink --host 0.0.0.0 --port 10080
# and the administrator's jobs (deploy/kubernetes/jobs/): python -m deploy.postgres.roles,
# python -m deploy.kafka_acls apply BOOTSTRAP.
# Configuration comes from the environment only (TARGETING_*, COMPOSER_*, DISPATCHER_*,
# TRACKER_*); nothing secret is copied into the image.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what `pip install .` packages (see [tool.setuptools.packages.find] in pyproject.toml):
# the migrations ship as package data next to each service.
COPY pyproject.toml ./
COPY shared/ shared/
COPY services/ services/
COPY deploy/__init__.py deploy/__init__.py
COPY deploy/kafka_acls.py deploy/kafka_acls.py
COPY deploy/local/ deploy/local/
COPY deploy/postgres/ deploy/postgres/

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -c "import services.targeting.app, services.composer.app, services.dispatcher.app, services.tracker.app, deploy.local.sms_sink, deploy.postgres.roles, deploy.kafka_acls"


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv

# An empty working directory: the code is imported from site-packages, not from a source tree.
WORKDIR /app
USER 10001:10001

EXPOSE 8000

CMD ["faststream", "run", "--help"]
