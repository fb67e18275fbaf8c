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
# Ready = model loaded and batcher alive; a large model may take a while to load and warm up.
# (With PLAUDIT_OPEN_PROBES=false the probes need a key, and this check fails: keep them open.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s CMD python -c "import os, sys, urllib.request; port = os.environ.get('PLAUDIT_PORT', '8000'); sys.exit(urllib.request.urlopen('http://127.0.0.1:' + port + '/readyz').status != 200)"
CMD ["plaudit", "serve"]
