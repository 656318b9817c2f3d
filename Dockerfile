# dropzone's container image: docs/deploy.md says how to build and run it.
#
#   docker build -t dropzone:0.1.0 .
#   docker run -d --name dropzone --read-only --tmpfs /tmp --stop-timeout 45 \
#     -v dropzone-state:/var/lib/dropzone \
#     -v "$PWD/dropzone.toml:/etc/dropzone/dropzone.toml:ro" \
#     -v "$PWD/secrets:/run/secrets:ro" -p 127.0.0.1:9464:9464 dropzone:0.1.0
#
# Both stages use the same base, pinned to an exact Python patch release on Debian bookworm
# (the build stage's venv links to the base's /usr/local/bin/python3.11). For a reproducible
# build pin its digest too, looked up where there is network:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   (the "Digest:" line)
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: a virtual environment at /opt/dropzone holding dropzone and its dependencies ------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# Only what the build reads (.dockerignore admits nothing else): the metadata, the README
# (the package's long description) and the package itself.
COPY pyproject.toml README.md ./
COPY dropzone ./dropzone

# Every dependency ships as a wheel, so no compiler is needed, here or in the final image.
# The venv gets no pip of its own (--without-pip): the base's pip installs into it (and
# compiles every module to .pyc, which a read-only root file system could not store later),
# so /opt/dropzone carries no installer into the final image.
RUN python -m venv --without-pip /opt/dropzone \
 && python -m pip --python /opt/dropzone/bin/python install . \
 && /opt/dropzone/bin/dropzone --version

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A fixed, unprivileged identity (10001 is in no distribution's range), so that volumes, secret
# files and Kubernetes' runAsUser can name it. The state directory is made (and owned) before
# VOLUME: a new named volume starts as a copy of it, ownership included.
RUN groupadd --system --gid 10001 dropzone \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin dropzone \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/dropzone \
 && install -d -m 0755 /etc/dropzone

COPY --from=build /opt/dropzone /opt/dropzone

# DROPZONE_CONFIG: mount the config there (-v ./dropzone.toml:/etc/dropzone/dropzone.toml:ro);
# any setting can also be given as DROPZONE_<SECTION>__<KEY> (-e DROPZONE_DAEMON__CONCURRENCY=8).
# DROPZONE_DAEMON__LISTEN: /metrics and /healthz on every interface of the container, so that
# a published port and the HEALTHCHECK reach them.
# Credentials: files access_key, secret_key (and session_token) in /run/secrets.
ENV PATH=/opt/dropzone/bin:$PATH \
    DROPZONE_CONFIG=/etc/dropzone/dropzone.toml \
    DROPZONE_DAEMON__LISTEN=0.0.0.0:9464 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The ledger (ledger.sqlite3, its WAL files and its lock): the only place dropzone writes,
# besides /tmp. Run with --read-only --tmpfs /tmp.
VOLUME /var/lib/dropzone
WORKDIR /var/lib/dropzone
USER 10001:10001
EXPOSE 9464

# The daemon handles SIGTERM itself (as PID 1 too): it stops taking work and drains in-flight
# calls for up to daemon.drain_timeout_s (30 s), then exits 0. Docker's default stop timeout
# is 10 s: give it 45 (docker run --stop-timeout 45, compose stop_grace_period: 45s).
# dropzone starts no child processes, so there are no zombies to reap as PID 1; --init is
# harmless if your platform adds it anyway.
STOPSIGNAL SIGTERM

# /healthz answers 200 while the main loop makes progress, 503 when it stalls. No curl in a
# slim image: the standard library asks, on the port of DROPZONE_DAEMON__LISTEN, bypassing any
# HTTP(S)_PROXY. It writes nothing, so it works on a read-only root file system.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/dropzone/bin/python", "-c", "import os, urllib.request as u; port = os.environ.get('DROPZONE_DAEMON__LISTEN', ':9464').rpartition(':')[2]; u.build_opener(u.ProxyHandler({})).open(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

ENTRYPOINT ["/opt/dropzone/bin/dropzone"]
CMD ["run"]
