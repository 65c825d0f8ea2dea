"""dask_workspace: run simulation studies on a Dask cluster with bounded memory."""

from __future__ import annotations

__version__ = "0.1.0"
