# syntax=docker/dockerfile:1
#
# The Dask image: scheduler and workers (`dask scheduler`, `dask worker`).
# It also carries the dask_workspace package: the scheduler loads the runner's statistics plugin
# from it, and the worker pods' preStop hook runs `python -m dask_workspace retire`.
#
# Build context: the repository root  (npm run images:build -- --registry R --tag T)
# Pins: the Python version in the base tag must equal .python-version, and every package comes
# from runner/requirements.lock with its hash (test/images.test.ts checks both).
# The base: any Debian-based image whose `python` is CPython 3.11 with pip (the lock holds cp311
# wheels). The default is the official slim image; the image test builds one from Debian packages
# (test/images/build.sh, docs/images.md) and passes it here.
ARG BASE_IMAGE=python:3.11.7-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Exactly the lockfile's packages and versions, verified by hash; --no-deps so that nothing
# unpinned can be pulled in.
COPY runner/requirements.lock /opt/dask-workspace/requirements.lock
RUN pip install --no-cache-dir --require-hashes --no-deps -r /opt/dask-workspace/requirements.lock

# The runner package from its source tree, put on sys.path by a .pth file: the same mechanism
# as the local .venv (scripts/ensure-venv.sh), and no build backend needed in the image.
# Bytecode is compiled now because the containers run with a read-only root filesystem.
COPY runner/src /opt/dask-workspace/src
RUN python -m compileall -q /opt/dask-workspace/src \
    && python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > /tmp/site \
    && echo /opt/dask-workspace/src > "$(cat /tmp/site)/dask_workspace_src.pth" \
    && rm /tmp/site \
    && python -c "import dask_workspace, distributed; print('dask_workspace', dask_workspace.__version__, 'distributed', distributed.__version__)"

# Non-root, numeric, matching the pods' securityContext (runAsUser/runAsGroup 10001; RUN_AS_USER in infra/workspace/security.ts).
RUN groupadd --gid 10001 dask \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/dask --shell /usr/sbin/nologin dask
USER 10001:10001
WORKDIR /home/dask

# Scheduler comm and dashboard/HTTP API ports.
EXPOSE 8786 8787
CMD ["dask", "--help"]
