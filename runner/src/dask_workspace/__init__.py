"""dask_workspace: run simulation studies on a Dask cluster with bounded memory."""

from __future__ import annotations

# Importing the package registers the runner's Dask config defaults (workspace.runner.*).
from dask_workspace import config as _config  # noqa: F401

__version__ = "0.1.0"
