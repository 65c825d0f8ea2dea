# syntax=docker/dockerfile:1
#
# The runner image: `python -m dask_workspace run STUDY --scheduler ... --results ...`, used by
# the workspace's runner Jobs. Same base, same lockfile, same package as images/dask.Dockerfile,
# so the runner's client and the cluster always run identical dask/distributed versions.
#
# Build context: the repository root  (npm run images:build -- --registry R --tag T)
# The base: any Debian-based image whose `python` is CPython 3.11 with pip (the lock holds cp311
# wheels). The default is the official slim image; the image test builds one from Debian packages
# (test/images/build.sh, docs/images.md) and passes it here.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Exactly the lockfile's packages and versions, verified by hash.
COPY runner/requirements.lock /opt/dask-workspace/requirements.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /opt/dask-workspace/requirements.lock

# The runner package from its source tree (see images/dask.Dockerfile for why a .pth file).
COPY runner/src /opt/dask-workspace/src
RUN python -m compileall -q /opt/dask-workspace/src \
    && python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > /tmp/site \
    && echo /opt/dask-workspace/src > "$(cat /tmp/site)/dask_workspace_src.pth" \
    && rm /tmp/site \
    && python -m dask_workspace run --help > /dev/null

# Non-root, numeric, matching the Job pods' securityContext (runAsUser/runAsGroup 10001; RUN_AS_USER in infra/workspace/security.ts).
RUN groupadd --gid 10001 dask \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/dask --shell /usr/sbin/nologin dask
USER 10001:10001
WORKDIR /home/dask

# No ENTRYPOINT: the Job spec gives the whole command (python -m dask_workspace run ...).
CMD ["python", "-m", "dask_workspace", "--help"]
