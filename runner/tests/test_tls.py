"""Dask TLS on the runner's side: the address/config check (exit 2), and a real TLS cluster
(``dask scheduler --protocol tls``, a ``dask worker`` over ``tls://``) that the runner completes
a study on, while a runner with another CA's certificate is told so at once (exit 4)."""

from __future__ import annotations

import datetime
import pathlib
import subprocess
from collections.abc import Iterator

import pytest
import yaml
from conftest import DASK, _env, _kill_group, free_port, run_study_cli, write_study
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dask_workspace.errors import EXIT_BAD_INPUT, EXIT_CLUSTER
from dask_workspace.tls import scheme_of, tls_problem

# ---------------------------------------------------------------------------------------------
# The pure check


def _get(values: dict[str, object]):
    return lambda key: values.get(key)


TLS = {
    "distributed.comm.tls.ca-file": "/etc/dask-tls/ca.crt",
    "distributed.comm.tls.client.cert": "/etc/dask-tls/tls.crt",
    "distributed.comm.tls.client.key": "/etc/dask-tls/tls.key",
    "distributed.comm.require-encryption": True,
}


def test_scheme_of_defaults_to_tcp_like_dask():
    assert scheme_of("tls://h:8786") == "tls"
    assert scheme_of("TCP://h:8786") == "tcp"
    assert scheme_of("h:8786") == "tcp"


def test_tls_address_needs_the_client_certificate_in_the_config():
    problem = tls_problem(address="tls://h:8786", get=_get({}))
    assert problem is not None
    assert "distributed.comm.tls.ca-file / distributed.comm.tls.client.cert" in problem
    assert "DASK_CONFIG" in problem


def test_tls_address_with_files_that_are_not_there():
    problem = tls_problem(address="tls://h:8786", get=_get(TLS), exists=lambda p: "ca" in p)
    assert problem is not None
    assert "/etc/dask-tls/tls.crt, /etc/dask-tls/tls.key do not exist" in problem


def test_tls_address_with_the_config_and_files_is_fine():
    assert tls_problem(address="tls://h:8786", get=_get(TLS), exists=lambda p: True) is None


def test_plain_address_when_the_config_requires_encryption_names_the_tls_address():
    problem = tls_problem(address="tcp://h:8786", get=_get(TLS))
    assert problem is not None
    assert "use tls://h:8786" in problem
    assert tls_problem(address="tcp://h:8786", get=_get({})) is None


def test_cli_exits_2_for_a_tls_address_without_certificates(tmp_path):
    study = write_study(tmp_path / "s.yaml")
    config = tmp_path / "dask"
    config.mkdir()
    result = run_study_cli(
        study,
        scheduler="tls://127.0.0.1:1",
        results=str(tmp_path / "r"),
        env={"DASK_CONFIG": str(config)},
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert "--scheduler: 'tls://127.0.0.1:1' is a TLS address" in result.stderr
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------
# A real cluster over TLS


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tls(folder: pathlib.Path, *, ca_name: str) -> pathlib.Path:
    """A CA and a server+client certificate it signed, as the workspace makes them (written as
    ca.crt, tls.crt, tls.key), and a Dask config dir naming them. Returns the config dir."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = folder / "tls"
    tls.mkdir(parents=True)
    (tls / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tls / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    role = {"cert": str(tls / "tls.crt"), "key": str(tls / "tls.key")}
    config = folder / "dask"
    config.mkdir()
    doc = {
        "distributed": {
            "comm": {
                "require-encryption": True,
                "tls": {
                    "ca-file": str(tls / "ca.crt"),
                    "scheduler": role,
                    "worker": role,
                    "client": role,
                },
            }
        }
    }
    (config / "tls.yaml").write_text(yaml.safe_dump(doc))
    return config


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, pathlib.Path]]:
    """``dask scheduler --protocol tls`` and one ``dask worker`` pod of 2 processes over TLS;
    yields (address, Dask config dir)."""
    folder = tmp_path_factory.mktemp("tls-cluster")
    config = make_tls(folder, ca_name="workspace CA")
    env = _env({"DASK_CONFIG": str(config)})
    port = free_port()
    address = f"tls://127.0.0.1:{port}"
    log = (folder / "scheduler.log").open("wb")
    procs = [
        subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    ]
    procs.append(
        subprocess.Popen(
            [
                DASK,
                "worker",
                address,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--memory-limit",
                "1GiB",
                "--name",
                "pod",
            ],
            stdout=(folder / "worker.log").open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    )
    try:
        yield address, config
    finally:
        for p in procs:
            _kill_group(p)
        for p in procs:
            p.wait(timeout=15)
        log.close()


def test_runner_completes_a_study_over_tls(tls_cluster, tmp_path):
    address, config = tls_cluster
    study = write_study(tmp_path / "s.yaml", parameters={"sets": [{"x": i} for i in range(6)]})
    result = run_study_cli(
        study,
        scheduler=address,
        results=str(tmp_path / "r"),
        summary=tmp_path / "summary.json",
        env={"DASK_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.summary is not None
    assert result.summary["groups_persisted"] == 6


def test_runner_with_another_cas_certificate_is_told_at_once(tls_cluster, tmp_path):
    address, _ = tls_cluster
    foreign = make_tls(tmp_path, ca_name="some other CA")
    study = write_study(tmp_path / "s.yaml", parameters={"sets": [{"x": 1}]})
    result = run_study_cli(
        study,
        scheduler=address,
        results=str(tmp_path / "r"),
        env={"DASK_CONFIG": str(foreign), "DASK_WORKSPACE__RUNNER__CONNECT_TIMEOUT": "60s"},
        timeout=50,  # well under the connect timeout: a handshake failure is not retried
    )
    assert result.returncode == EXIT_CLUSTER, result.stderr[-3000:]
    assert f"TLS handshake with the Dask scheduler at {address} failed" in result.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_runner_with_a_plain_address_on_a_tls_workspace_exits_2(tls_cluster, tmp_path):
    address, config = tls_cluster
    plain = address.replace("tls://", "tcp://")
    study = write_study(tmp_path / "s.yaml", parameters={"sets": [{"x": 1}]})
    result = run_study_cli(
        study, scheduler=plain, results=str(tmp_path / "r"), env={"DASK_CONFIG": str(config)}
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert f"use {address}" in result.stderr
