"""``python -m dask_workspace run|retire ...``"""

from __future__ import annotations

from dask_workspace.cli import main

if __name__ == "__main__":
    main()
