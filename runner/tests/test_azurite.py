"""Results on Azure Blob Storage, against Azurite (the npm package) on a loopback port."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, free_port, run_study_cli, write_study

from dask_workspace.errors import UsageError
from dask_workspace.results import open_backend, read_results

AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's documented development account (public, well-known; not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@pytest.fixture
def azurite(tmp_path) -> Iterator[str]:
    """Starts azurite-blob on a free loopback port; yields its connection string."""
    assert AZURITE.exists(), "run npm ci: azurite is a devDependency"
    port = free_port()
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(tmp_path / "azurite"),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            "--disableTelemetry",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("azurite-blob did not start")
            time.sleep(0.1)
        yield (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_blob_round_trip_and_resume(cluster, azurite, tmp_path, monkeypatch):
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite}
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    study = write_study(
        tmp_path / "s.yaml",
        parameters={"grid": {"x": [0, 1, 2, 3, 4]}},
        outputs=["series"],
    )
    uri = "az://results/studies/syn"
    first = run_study_cli(
        study,
        scheduler=cluster.address,
        results=uri,
        summary=tmp_path / "1.json",
        args=["--flush-groups", "2"],
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert first.summary["parts_written"] >= 2  # flushes every 2 or more finished groups

    r = read_results(uri)
    assert r.persisted == {0, 1, 2, 3, 4}
    mean_x = r.aggregates[r.aggregates.target == "mean_x"]
    assert sorted(mean_x["value"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert (mean_x["value"] == mean_x["x"]).all()
    assert len(r.outputs["series"]) == 5 * 3 * 4

    # An uncommitted part (a crash between part and manifest) is removed on resume.
    backend = open_backend(uri)
    orphan = "aggregates/part-crashed-00000.parquet"
    sink = io.BytesIO()
    pq.write_table(pa.table({"group_id": [99]}), sink)
    backend.write_bytes(orphan, sink.getvalue())
    assert orphan in backend.list_files("aggregates")

    again = run_study_cli(
        study, scheduler=cluster.address, results=uri, summary=tmp_path / "2.json", env=env
    )
    assert again.returncode == 0, again.stderr
    assert again.summary["tasks_submitted"] == 0
    assert orphan not in backend.list_files("aggregates")
    assert len(read_results(uri).aggregates) == len(r.aggregates)


def test_blob_without_credentials_is_bad_input(monkeypatch):
    for var in list(os.environ):
        if var.startswith("AZURE_"):
            monkeypatch.delenv(var)
    with pytest.raises(UsageError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        open_backend("az://results/prefix")
