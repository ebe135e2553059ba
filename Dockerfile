# The one kstudio image: operator, trainer and scorer are subcommands of `kstudio`.
# On a real cluster: docker build -t kstudio:dev . (the local node agent maps `kstudio` images to this checkout).
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /opt/kstudio
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY cli cli
COPY operator operator
COPY core core
COPY scorer scorer
COPY trainer trainer
COPY hack/kstudio_localcluster hack/kstudio_localcluster
RUN uv sync --frozen --no-dev --no-editable

FROM python:3.11-slim
COPY --from=build /opt/kstudio/.venv /opt/kstudio/.venv
ENV PATH=/opt/kstudio/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Non-root by default: the restricted Pod Security profile needs a numeric, non-zero user.
USER 65532:65532
ENTRYPOINT ["kstudio"]
