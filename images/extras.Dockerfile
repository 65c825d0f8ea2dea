# syntax=docker/dockerfile:1
#
# A study's own dependencies on top of a workspace image (dask or runner): built by
#   npm run images:build -- --registry R --tag T --requirements requirements.txt --package ./mypkg
# which builds the two base images first (as <name>:<T>-base) and then this file FROM each of
# them, with a build context that images/extras.ts prepares:
#   requirements.txt  pinned name==version lines (never a version the base image already pins
#                     differently); installed without dependency resolution
#   dists/<name>/     local distributions (a pyproject.toml or setup.py), pip-installed --no-deps
#   site/<name>/      plain package folders, put on sys.path by a .pth file
# `pip check` then fails the build if anything needs a package that is not pinned.
ARG BASE_IMAGE=dask-workspace/dask:0.1.0-base
FROM ${BASE_IMAGE}

USER 0
COPY . /opt/dask-workspace/extras
# The local distributions are pinned by being these very files (hence DL3013 does not apply).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --no-deps -r /opt/dask-workspace/extras/requirements.txt \
    && for d in /opt/dask-workspace/extras/dists/*/; do \
         [ -d "$d" ] || continue; pip install --no-cache-dir --no-deps "$d" || exit 1; \
       done \
    && python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > /tmp/site \
    && echo /opt/dask-workspace/extras/site > "$(cat /tmp/site)/dask_workspace_extras.pth" \
    && rm /tmp/site \
    && python -m compileall -q /opt/dask-workspace/extras/site \
    && pip check

# Back to the pods' numeric non-root user (runAsUser/runAsGroup 10001; RUN_AS_USER in infra/workspace/security.ts).
USER 10001:10001
