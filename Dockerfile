# The one kstudio image: operator, trainer, scorer and console are subcommands of `kstudio`.
# It holds the product wheel only (no local cluster, no dev tools), installed into a clean venv with the
# locked requirements: the same steps as `kstudio-dev image-venv`, whose venv the tests run on the local
# cluster (tests/image). On a real cluster: docker build -t kstudio:dev .
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /src
# hack/pyproject.toml only declares the workspace's dev member; uv needs it to read the lock.
COPY pyproject.toml uv.lock README.md ./
COPY hack/pyproject.toml hack/pyproject.toml
RUN uv export --frozen --no-dev --no-emit-project --no-emit-workspace --package kstudio --quiet \
        --output-file /tmp/requirements.txt \
    && uv venv --python /usr/local/bin/python3.11 /opt/kstudio/.venv \
    && uv pip install --python /opt/kstudio/.venv/bin/python --requirements /tmp/requirements.txt
COPY cli cli
COPY operator operator
COPY core core
COPY scorer scorer
COPY trainer trainer
COPY console console
RUN uv build --wheel --package kstudio --out-dir /tmp/dist \
    && uv pip install --python /opt/kstudio/.venv/bin/python --no-deps /tmp/dist/kstudio-*.whl

FROM python:3.11-slim
COPY --from=build /opt/kstudio/.venv /opt/kstudio/.venv
ENV PATH=/opt/kstudio/.venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# Non-root by default: the restricted Pod Security profile needs a numeric, non-zero user.
USER 65532:65532
ENTRYPOINT ["kstudio"]
