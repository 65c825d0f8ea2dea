"""``python -m dask_workspace run ...`` in-process, with wall-clock timestamps of the runner's
phases (connect, plugin registration, each group's submission and completion, the probe's first
estimate, each results write, the final statistics) and the scheduler's task stream, written as
JSON to $TRACE_OUT. Used by bench/phases/sir_phases.py."""

import functools
import json
import os
import sys
import time

T = []


def mark(name, **kw):
    T.append((time.time(), name, kw))


import dask_workspace.chunking as C
import dask_workspace.runner as R
from distributed import Client


def wrap(obj, attr, name, after=True, info=None):
    orig = getattr(obj, attr, None)
    if orig is None:  # renamed or gone in this version of the runner: not traced
        print(f"traced_run: {obj.__name__}.{attr} not found, not traced", file=sys.stderr)
        return

    @functools.wraps(orig)
    def w(*a, **k):
        mark(name + ":start", **(info(*a, **k) if info else {}))
        try:
            return orig(*a, **k)
        finally:
            if after:
                mark(name + ":end")

    setattr(obj, attr, w)


wrap(R, "run_study", "run_study")
wrap(R, "connect", "connect")
wrap(R, "register_bundle", "register_bundle")
wrap(R, "_wait_for_any_worker", "wait_worker")
wrap(R, "_check_importable", "check_importable")
wrap(Client, "register_plugin", "register_plugin")
wrap(Client, "close", "client_close")
wrap(R.StudyRunner, "execute", "execute")
wrap(R.StudyRunner, "finish", "finish")
wrap(R.StudyRunner, "_poll_stats", "poll_stats")
wrap(
    R.StudyRunner,
    "_submit_group",
    "submit",
    after=False,
    info=lambda self, gid, attempt: {"gid": gid, "probing": self.chunks.estimate.value is None},
)
wrap(R.StudyRunner, "_finish", "group_done", after=False, info=lambda self, g: {"gid": g.gid})
wrap(R.ResultStore, "write", "store_write", info=lambda self, recs: {"n": len(recs)})
import dask_workspace.results as RS
import dask_workspace.storage as S

wrap(
    S.LocalBackend,
    "write_bytes",
    "write_bytes",
    info=lambda self, rel, data: {"rel": rel[:20], "n": len(data)},
)
wrap(RS, "_parquet_bytes", "parquet_bytes")
orig_obs = C.ChunkPlanner._observe


def obs(self, s, *, source):
    first = self.estimate.value is None
    orig_obs(self, s, source=source)
    if first:
        mark("first_estimate", seconds=s, source=source)


C.ChunkPlanner._observe = obs

if hasattr(C.ChunkPlanner, "submit_rest"):
    wrap(C.ChunkPlanner, "submit_rest", "submit_rest")
wrap(R.StudyRunner, "_admit", "admit")
ts = {}
orig_fin = R.StudyRunner.finish


def fin(self):
    orig_fin(self)
    try:
        ts["stream"] = self.client.get_task_stream(start=T[0][0] - 1)
    except Exception as e:
        ts["err"] = repr(e)


R.StudyRunner.finish = fin

from dask_workspace.cli import main

out = os.environ["TRACE_OUT"]
try:
    main()
except SystemExit as e:
    code = e.code
finally:
    json.dump(
        {
            "marks": T,
            "stream": [
                {
                    "key": str(s["key"]),
                    "worker": s["worker"],
                    "thread": s.get("thread"),
                    "startstops": [dict(x) for x in s["startstops"]],
                }
                for s in ts.get("stream", [])
            ],
            "err": ts.get("err"),
        },
        open(out, "w"),
        default=str,
    )
