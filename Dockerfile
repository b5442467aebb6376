# eventide worker image (used by docker-compose.yml; not built in CI, which has no Docker engine).
FROM python:3.11-slim
WORKDIR /srv/eventide
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY tables ./tables
RUN pip install --no-cache-dir .
ENV EVENTIDE_HTTP_HOST=0.0.0.0 EVENTIDE_DATA_DIR=/var/lib/eventide
VOLUME /var/lib/eventide
EXPOSE 6066
ENTRYPOINT ["eventide"]
CMD ["worker"]
