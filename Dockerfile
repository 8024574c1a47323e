# syntax=docker/dockerfile:1
# The anomaly detector daemon, as docker-compose.yml builds and runs it. On its own:
#   docker build -t anomaly-detector . && docker run --env-file .env -p 127.0.0.1:9108:9108 anomaly-detector
# Secrets (INFLUXDB_TOKEN) come from the environment at run time, never from the image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

WORKDIR /app

RUN groupadd --system --gid 10001 detector \
    && useradd --system --uid 10001 --gid detector --create-home --shell /usr/sbin/nologin detector

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# outputs/ (the model) and logs/ (write-ahead log, spool, application.log) are volumes in
# docker-compose.yml; created here, owned by the runtime user, so a new volume inherits the owner.
RUN mkdir -p outputs logs && chown detector:detector outputs logs

USER detector

ENV TELEMETRY_HOST=0.0.0.0 \
    TELEMETRY_PORT=9108 \
    LOGS_DIR=/app/logs
EXPOSE 9108

# /healthz is served by the monitor; training on first start can take a few minutes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TELEMETRY_PORT', '9108') + '/healthz', timeout=4)"]

CMD ["python", "main.py", "--mode", "monitor"]
