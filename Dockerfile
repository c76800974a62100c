# syntax=docker/dockerfile:1
# Downtime Operator image: `downtime-operator run` as a non-root user, installed from
# the project's wheel (never from the source tree).
#
#   docker build -t downtime-operator:0.1.0 .
#   docker run --rm -e DATABASE_URL=postgresql://... downtime-operator:0.1.0          # run
#   docker run --rm -e DATABASE_URL=postgresql://... downtime-operator:0.1.0 migrate  # schema
#
# Both stages use the same base, pinned by its exact version tag; BASE_IMAGE replaces it where
# Docker Hub is out of reach (the tests build on a stand-in of the same Debian release and
# Python minor version, see scripts/build-image.sh). A digest
# (python:3.11.13-slim-bookworm@sha256:...) would pin it immutably, but no registry was
# reachable where this file was written to look it up; add it where one is (for example with
# `docker buildx imagetools inspect python:3.11.13-slim-bookworm`).
# tests/unit/test_dockerfile.py checks the invariants below; tests/e2e/test_image.py builds the
# image and runs it as the chart does.

ARG BASE_IMAGE=python:3.11.13-slim-bookworm

# ---- builder: the wheel (pure Python: migrations SQL and py.typed included as package data)
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY operator/ ./operator/
RUN pip wheel --no-deps -w /dist .

# ---- runtime: only the installed wheel and its pinned dependencies
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="downtime-operator" \
      org.opencontainers.image.description="Kubernetes operator that records every HTTP health-endpoint outage with its logs"
ENV PYTHONSAFEPATH=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 downtime \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/downtime --create-home \
      --shell /usr/sbin/nologin downtime
COPY --from=builder /dist/ /tmp/dist/
RUN pip install --no-cache-dir /tmp/dist/*.whl \
 && rm -rf /tmp/dist
WORKDIR /home/downtime
USER 10001:10001
# Admin API, metrics and health probes.
EXPOSE 8080
ENTRYPOINT ["downtime-operator"]
CMD ["run"]
