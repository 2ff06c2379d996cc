# syntax=docker/dockerfile:1
# Conveyor operator image. Build from the repository root:
#   docker build --build-arg REVISION=$(git rev-parse HEAD) --build-arg SOURCE=<repository URL> \
#     -t conveyor:$(git rev-parse --short HEAD) .
# Dependencies are installed from the lock file before the source is copied, so a code change does
# not invalidate the dependency layer.

FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY operator ./operator
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
ARG REVISION=unknown
ARG SOURCE=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="conveyor" \
      org.opencontainers.image.description="Kubernetes operator: one immutable image per commit, promoted from staging to production" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Only the virtualenv crosses over: no uv, no pip caches, no build tools in the final image.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1
USER 65532:65532
EXPOSE 8080 9090 8642
ENTRYPOINT ["conveyor"]
CMD ["run"]
