# One image for every flowscope process: receiver, stream worker, dashboards, migrations.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY contract ./contract
COPY config ./config
COPY ingest ./ingest
COPY stream ./stream
COPY warehouse ./warehouse
COPY chserver ./chserver
COPY dashboards ./dashboards
COPY embedded ./embedded
COPY flowtools ./flowtools
COPY flowscope ./flowscope
# Production talks to Apache Kafka and ClickHouse server: no embedded extra (tansu, chDB).
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 flowscope \
    && mkdir -p /data && chown flowscope /data

USER flowscope
ENV FLOWSCOPE_DATA_DIR=/data
# receiver (webhooks, /healthz, /metrics), dashboards, stream worker /metrics
EXPOSE 8000 8501 9102
ENTRYPOINT ["flowscope"]
CMD ["--help"]
