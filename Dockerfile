# Serving image: ONNX Runtime on CPU, no torch. Mount a model store (and the feedback
# database directory) at /data; train models elsewhere with `plaudit train` (needs the
# `train` extra) or build FROM this image with `pip install '.[train]'` added.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PLAUDIT_HOST=0.0.0.0 PLAUDIT_PORT=8000 \
    PLAUDIT_STORE_DIR=/data/models PLAUDIT_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY plaudit ./plaudit
COPY model_store ./model_store
COPY service ./service
COPY training ./training
COPY loadtest ./loadtest
RUN pip install --no-cache-dir '.[postgres]' \
    && useradd --create-home --uid 1000 plaudit \
    && mkdir -p /data && chown plaudit /data
USER plaudit
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["plaudit", "serve"]
