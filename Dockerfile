# syntax=docker/dockerfile:1
# One image for every ai-ops process: `ai-ops operator`, `ai-ops chat`, `ai-ops mcp kubernetes|netops`.
# Built by `make deploy` (the kind suite); the Helm chart runs it as uid 10001 with a read-only root.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: a virtualenv with ai-ops and its dependencies -------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Compilers only for dependencies without a wheel for this platform; they stay in this stage.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Optional provider extras, e.g. --build-arg EXTRAS=anthropic,huggingface
ARG EXTRAS=""
COPY pyproject.toml README.md ./
COPY ai_ops_api ./ai_ops_api
COPY ai_ops_cli ./ai_ops_cli
COPY ai_ops_common ./ai_ops_common
COPY operator ./operator
COPY chat_service ./chat_service
COPY mcp_servers ./mcp_servers
RUN pip install --upgrade pip \
 && pip install "/src${EXTRAS:+[$EXTRAS]}" \
 && ai-ops --help >/dev/null

# --- runtime: the interpreter, the virtualenv, a non-root user -------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="ai-ops" \
      org.opencontainers.image.description="ai-ops operator, chat service and bundled MCP servers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ai-ops/ai-ops" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"
RUN groupadd --system --gid 10001 ai-ops \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ai-ops
COPY --from=build /opt/venv /opt/venv
# Bytecode is compiled at install time; the root filesystem is read-only in the cluster.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# chat 8080; operator liveness 8080 and metrics 9090; MCP servers 8091 (kubernetes), 8092 (netops).
EXPOSE 8080 8091 8092 9090
ENTRYPOINT ["ai-ops"]
CMD ["--help"]
