# syntax=docker/dockerfile:1
# The eventide image: `eventide worker` (default), `eventide api` (the stateless ingest tier) or
# `eventide topics`, as docker-compose.yml runs them. Not built in CI (no Docker engine there).
#
# It runs against Kafka (EVENTIDE_BROKER), so it leaves out the embedded broker (the `embedded`
# extra): `eventide up` without EVENTIDE_BROKER says so in one line.
#
# The base is an exact Python release on an exact Debian release. Where you build, pin it to its
# digest too (`docker buildx imagetools inspect python:3.11.13-slim-bookworm` prints it):
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- eventide's own wheel and its compiled hot path, built apart: no source tree, compiler or mypy
# --- is left in the image ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS wheel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# mypyc (tables/native.py) needs a C compiler, and the runtime dependencies and mypy at the
# lock's versions: the compile reads the same types as `make native` does.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', \
'rb'))['project']['dependencies']))" > /tmp/runtime.txt \
 && pip install -c requirements.lock -r /tmp/runtime.txt mypy "setuptools>=68"
COPY app ./app
COPY agents ./agents
COPY tables ./tables
# The wheel first (Python sources only), then the extensions in place, each module's and the
# group's library, with the manifest of the sources they were compiled from; they are gathered
# in /compiled under their package paths.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && python -c "import tables.native as n; n.main(); assert not n.stale_sources()" \
 && python -c "import tables.native as n; print('\n'.join(str(p.relative_to(n.ROOT)) \
for p in n.built_files()))" > /tmp/built.txt \
 && mkdir /compiled && tar -cf - -T /tmp/built.txt | tar -xf - -C /compiled

# --- the image -----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# An unprivileged user runs eventide and owns the state directory; the code stays root's.
RUN groupadd --system --gid 10001 eventide \
 && useradd --system --uid 10001 --gid eventide --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin eventide \
 && install -d -o eventide -g eventide -m 0700 /var/lib/eventide

# Dependencies in their own layer, before any code: the runtime dependencies of pyproject.toml
# (not the test or embedded extras) at requirements.lock's versions. A code change keeps this
# layer; only a change to the dependencies or the lock rebuilds it.
COPY pyproject.toml requirements.lock /tmp/deps/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/deps/pyproject.toml', \
'rb'))['project']['dependencies']))" > /tmp/deps/runtime.txt \
 && pip install -c /tmp/deps/requirements.lock -r /tmp/deps/runtime.txt \
 && rm -r /tmp/deps

# The code: eventide's wheel alone (its dependencies are all there already; pip check proves it).
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -r /tmp/wheels && pip check
# The compiled hot path beside the installed sources. The manifest's digests tie the build to
# those sources (tables/native.py removes a build they do not match); the second step proves
# that the worker will run it.
COPY --from=wheel /compiled /tmp/compiled
RUN python -c "import shutil, tables.native as n; \
shutil.copytree('/tmp/compiled', n.ROOT, dirs_exist_ok=True)" \
 && rm -r /tmp/compiled \
 && python -c "import tables.native as n; assert not n.stale_sources() and n.in_use()"

# Listen on every interface of the container; logs as one JSON object per line on stderr.
ENV EVENTIDE_HTTP_HOST=0.0.0.0 EVENTIDE_HTTP_PORT=6066 EVENTIDE_DATA_DIR=/var/lib/eventide \
    EVENTIDE_LOG_FORMAT=json
# Worker state (RocksDB): a cache of the changelog topics, one volume per container.
VOLUME /var/lib/eventide
WORKDIR /var/lib/eventide
# Numeric, so that runAsNonRoot-style checks can verify it without the image's /etc/passwd.
USER 10001:10001
EXPOSE 6066

# /healthz answers 200 once the worker joined its group and recovered its partitions (the ingest
# tier: once its producer is connected), 503 before. Python's urllib: the slim image has no curl.
# Recovery of a large state can take minutes: the start period allows for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=4 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r; s = 'https' if os.environ.get('EVENTIDE_TLS_CERT') else 'http'; r.urlopen(s + '://127.0.0.1:' + (os.environ.get('EVENTIDE_HTTP_PORT') or '6066') + '/healthz', timeout=4, context=ssl._create_unverified_context())"]

# eventide is PID 1 (exec form, no shell in between), so SIGTERM reaches it: the worker leaves
# its consumer group and flushes before exiting (compose's stop_grace_period bounds how long).
STOPSIGNAL SIGTERM
ENTRYPOINT ["eventide"]
CMD ["worker"]
