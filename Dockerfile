# Watchkeeper daemon image: multi-stage (compile and install in a build stage, copy the virtual env and the
# source into a slim runtime), runs as a non-root user (uid 10001).
#   docker build -t watchkeeper .
#   docker run --rm -e WATCHKEEPER_DATABASE_URL=... -e WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS=... -p 9464:9464 watchkeeper
# The package is installed in editable mode from /app: the Alembic migrations are read from the source tree
# (monitor/storage/db.py), so the tree is kept at the same path in both stages.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY monitor ./monitor
COPY detectors ./detectors
COPY inference ./inference
COPY alembic ./alembic
COPY alembic.ini ./
RUN python -m venv /opt/watchkeeper \
 && /opt/watchkeeper/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/watchkeeper/bin/pip install --no-cache-dir -e .

FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 watchkeeper \
 && useradd --system --uid 10001 --gid watchkeeper --home-dir /var/lib/watchkeeper --create-home watchkeeper
COPY --from=build /opt/watchkeeper /opt/watchkeeper
COPY --from=build /app /app
COPY monitor.toml /etc/watchkeeper/monitor.toml
ENV PATH=/opt/watchkeeper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    WATCHKEEPER_METRICS_PORT=9464
USER 10001:10001
WORKDIR /var/lib/watchkeeper
EXPOSE 9464 8765
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/livez', timeout=4)"]
ENTRYPOINT ["watchkeeper", "--log-format", "json"]
CMD ["run", "--config", "/etc/watchkeeper/monitor.toml"]
