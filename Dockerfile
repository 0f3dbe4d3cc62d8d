# Threadline in a container.
#   docker build -t threadline .
#   docker run -p 8000:8000 -v threadline-data:/data threadline
# SQLite and the generated encryption key live in /data unless THREADLINE_DATABASE_URL and
# THREADLINE_ENCRYPTION_KEYS say otherwise; compose.yaml runs it with PostgreSQL.

# The build stage compiles llama.cpp (the embedded model) once; the image keeps only the result.
FROM python:3.11-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
# Compiled for any x86-64 or arm64 CPU, not only the build machine's.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/threadline/bin:$PATH
RUN python -m venv /opt/threadline
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install .

FROM python:3.11-slim-bookworm
# libgomp1: llama.cpp's threads.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 threadline \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /data threadline
COPY --from=build /opt/threadline /opt/threadline
ENV PATH=/opt/threadline/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    THREADLINE_HOST=0.0.0.0 \
    THREADLINE_PORT=8000 \
    THREADLINE_DATABASE_URL=sqlite:////data/threadline.db
# By number: an orchestrator can tell it is not root without reading /etc/passwd.
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
# /health answers 200 once the database is migrated and the models are loaded.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
ENTRYPOINT ["threadline"]
CMD ["serve"]
