# The temporal-aks worker image: Python 3.11 slim, hash-checked dependencies from wheels only (no
# compiler), the app's top-level modules and start.sh, run as an unprivileged user.
# Build: ./deploy.sh (docker buildx for linux/amd64 and linux/arm64, or az acr build).

# The base image, pinned by the digest of its multi-platform index (python:3.11-slim, Python 3.11.16 on
# Debian trixie, as of 2026-09-01), so a rebuild starts from the same bytes until this line changes. To take
# a newer base (security updates), put in the "Digest:" line this prints (the index's, which covers every
# platform; not one platform's manifest), then rebuild and run the tests:
#   docker buildx imagetools inspect python:3.11-slim
# A build argument, so the tests can point it at their local stand-in (tests/image/test_image.py).
ARG BASE_IMAGE=python:3.11-slim@sha256:9534e5a8e315485d4061ed659af0fd78a284c015f9b73661b41d6bab25604534
FROM ${BASE_IMAGE}

# IN_CONTAINER=true: start.sh execs the one Python process asked for (no venv, no dev server).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IN_CONTAINER=true \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# requirements.lock pins every package with the sha256 of its files (./lock-requirements.sh writes it
# from requirements.txt): pip refuses anything unpinned or with another hash. Wheels only: every pinned
# dependency ships wheels for amd64 and arm64, so a missing one fails the build here instead of
# pulling in a compiler.
COPY requirements.lock ./
RUN pip install --no-cache-dir --only-binary=:all: --require-hashes -r requirements.lock

# A fixed numeric UID/GID, so Kubernetes can verify runAsNonRoot (the Deployment uses the same IDs).
RUN groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid worker --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin worker

# Only the app, which is the repository's root: its modules and start.sh. .dockerignore keeps config.env, .venv,
# tests, docs, the deploy side (deploy/) and manifests out of the context.
# The files stay owned by root, so the worker cannot modify its own code.
COPY *.py start.sh ./
RUN chmod 0755 start.sh

USER 10001:10001

# Prometheus metrics from the Temporal SDK runtime (METRICS_PORT); /livez and /readyz (HEALTH_PORT).
EXPOSE 9000 9001

# start.sh execs Python, so the worker is PID 1 and receives SIGTERM for a graceful shutdown.
CMD ["./start.sh", "worker"]
