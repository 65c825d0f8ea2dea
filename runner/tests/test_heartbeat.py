"""The nanny heartbeat preload, in a real ``dask worker`` pod: it keeps beating while a worker
process is busy with a GIL-holding task, and stops when the host process's event loop stops."""

from __future__ import annotations

import os
import pathlib
import signal
import time

from conftest import start_cluster


def _wait_for(path: pathlib.Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"no heartbeat at {path} after {timeout} s")
        time.sleep(0.1)


def test_heartbeat_follows_the_host_loop_not_the_workers(tmp_path: pathlib.Path) -> None:
    beat = tmp_path / "hb" / "nanny-heartbeat"
    cluster = start_cluster(tmp_path / "logs", pods=())
    try:
        # The flag the worker Deployment adds to `dask worker` (infra/workspace/workers.ts).
        cluster.add_pod(
            "pod",
            nworkers=2,
            nthreads=1,
            env={
                "DASK_WORKSPACE__HEARTBEAT__PATH": str(beat),
                "DASK_WORKSPACE__HEARTBEAT__INTERVAL": "200ms",
            },
            extra_args=["--preload-nanny", "dask_workspace.heartbeat"],
        )
        cluster.wait_for_workers(2)
        _wait_for(beat)
        with cluster.client() as client:
            # Both worker processes busy in one long GIL-holding C loop (sum over a range): the
            # nanny loop is not theirs, so it beats on.
            futures = [client.submit(sum, range(200_000_000), pure=False) for _ in range(2)]
            time.sleep(0.5)
            start = beat.stat().st_mtime
            time.sleep(1.5)
            busy = client.processing()
            assert sum(len(v) for v in busy.values()) == 2, busy
            assert beat.stat().st_mtime - start >= 1.0
            client.gather(futures)

        # The host process stopped (a hung loop): the file goes stale while it is stopped ...
        host = cluster.pods["pod"].pid
        os.kill(host, signal.SIGSTOP)
        try:
            time.sleep(0.5)
            frozen = beat.stat().st_mtime
            time.sleep(2.0)
            assert beat.stat().st_mtime == frozen
            assert time.time() - frozen >= 2.0
        finally:
            os.kill(host, signal.SIGCONT)
        # ... and fresh again once it runs.
        time.sleep(1.5)
        assert time.time() - beat.stat().st_mtime < 1.0
    finally:
        cluster.stop()
