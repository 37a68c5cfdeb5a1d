# syntax=docker/dockerfile:1.7
# shop-by-image: the sharding proxy (`shardproxy serve`), its CLI, and the embedding worker (`embed worker`).
#
#   docker build -t shop-by-image:0.1.0 .
#   docker run --rm -p 19530:19530 -p 9100:9100 -e SHARDPROXY_REDIS_URL=redis://redis:6379/0 shop-by-image:0.1.0
#   docker run --rm -v "$PWD/models:/models:ro" --entrypoint embed shop-by-image:0.1.0 worker
#
# Model weights are NOT in the image: mount them at /models (read-only) and point EMBED_WEIGHTS /
# EMBED_PROJECTION / EMBED_YOLO_PATH at files there. Derived artefacts go to EMBED_CACHE_DIR.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# ---------------------------------------------------------------- builder: a venv with everything
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, pinned, CPU build (an open range from PyPI pulls the CUDA wheels, gigabytes)
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gen ./gen
COPY shardproxy ./shardproxy
COPY embed ./embed
COPY devkit ./devkit
RUN pip install ".[tracing]" \
 && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

# ---------------------------------------------------------------- runtime: the venv, a non-root user
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="shop-by-image" \
      org.opencontainers.image.description="Milvus sharding proxy and image embedding pipeline"
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
 && mkdir -p /models /var/cache/shop-by-image \
 && chown app:app /var/cache/shop-by-image
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SHARDPROXY_HOST=0.0.0.0 \
    SHARDPROXY_PORT=19530 \
    SHARDPROXY_METRICS_PORT=9100 \
    EMBED_CACHE_DIR=/var/cache/shop-by-image
VOLUME ["/models", "/var/cache/shop-by-image"]
USER 10001:10001
WORKDIR /home/app
# 19530: Milvus protocol + admin + gRPC health; 9100: proxy /metrics; 9101: embed worker /metrics
EXPOSE 19530 9100 9101
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "shardproxy.healthcheck"]
ENTRYPOINT ["shardproxy"]
CMD ["serve"]
