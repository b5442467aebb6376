# The eventide image: `eventide worker` (default), `eventide api` (the stateless ingest tier) or
# `eventide topics`, as docker-compose.yml runs them. Not built in CI (no Docker engine there).
FROM python:3.11-slim
WORKDIR /srv/eventide
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
RUN pip install --no-cache-dir .
# Listen on every interface of the container; logs as one JSON object per line on stderr.
ENV EVENTIDE_HTTP_HOST=0.0.0.0 EVENTIDE_DATA_DIR=/var/lib/eventide EVENTIDE_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
# Worker state (RocksDB): a cache of the changelog topics, one volume per container.
VOLUME /var/lib/eventide
EXPOSE 6066
ENTRYPOINT ["eventide"]
CMD ["worker"]
