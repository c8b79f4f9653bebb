# syntax=docker/dockerfile:1.7
# The one image recipe for every service: the build argument PACKAGE names the workspace package
# (codexpool-router, codexpool-health, codexpool-admin-api, codexpool-ui, codexpool-sim), and
# the image runs that package's console script of the same name. Built from the repository root:
#   docker build --build-arg PACKAGE=codexpool-router -t codexpool/router:0.1.0 .
# (`make images` builds all five.) tests/integration/test_images.py reads this file and runs
# its build steps (the COPY sources and the RUN commands of the build stage) for every package,
# then starts the result: keep the build stage to FROM, ARG, ENV, WORKDIR, COPY and RUN.

# uv as the workspace pins it (Makefile: UV_VERSION).
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11-slim AS build
ARG PACKAGE
COPY --from=uv /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app

# Dependencies only: a layer that changes when uv.lock does, not when the code does. uv needs
# every workspace member's pyproject.toml to read the workspace.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=shared/pyproject.toml,target=shared/pyproject.toml \
    --mount=type=bind,source=services/router/pyproject.toml,target=services/router/pyproject.toml \
    --mount=type=bind,source=services/health/pyproject.toml,target=services/health/pyproject.toml \
    --mount=type=bind,source=services/admin-api/pyproject.toml,target=services/admin-api/pyproject.toml \
    --mount=type=bind,source=services/ui/pyproject.toml,target=services/ui/pyproject.toml \
    --mount=type=bind,source=tools/codex-sim/pyproject.toml,target=tools/codex-sim/pyproject.toml \
    : "${PACKAGE:?build with --build-arg PACKAGE=codexpool-<service>}" && \
    uv sync --frozen --no-dev --no-install-workspace --package "$PACKAGE"

# Every member's sources: uv installs only PACKAGE and what it declares, as wheels
# (--no-editable), so the runtime stage needs nothing but the environment.
COPY uv.lock pyproject.toml ./
COPY shared shared
COPY services services
COPY tools tools
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "$PACKAGE"

FROM python:3.11-slim
ARG PACKAGE
LABEL org.opencontainers.image.title="$PACKAGE"
COPY --from=build /app/.venv /app/.venv
# /data belongs to the service's user: a named volume mounted there starts with this owner, so
# codex-sim writes its auth files there without root (compose's sim-auth volume).
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app && \
    mkdir /data && chown 10001:10001 /data && \
    ln -s "/app/.venv/bin/$PACKAGE" /app/entrypoint && test -x /app/entrypoint
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 PYTHONNOUSERSITE=1
USER 10001
# Every service listens on its own default port (router 8080, admin-api 8081, ui 8082,
# health 8083, codex-sim 8090); --port moves it.
ENTRYPOINT ["/app/entrypoint", "--host", "0.0.0.0"]
