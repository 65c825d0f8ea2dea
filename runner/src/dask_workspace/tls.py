"""Dask TLS on the runner's side: is the Dask config right for the scheduler address, and a
TLS handshake for the reachability probe.

The runner does not build TLS settings itself: ``distributed.Client`` reads them from the Dask
config (``distributed.comm.tls.ca-file``, ``distributed.comm.tls.client.cert``/``key``,
``distributed.comm.require-encryption``), which the workspace mounts in every pod (and
``npm run local`` writes for every run). What Dask leaves to chance is a mismatch between that
config and the address: a ``tls://`` address without certificates fails deep inside Dask, and a
``tcp://`` address with ``require-encryption`` is refused with a ``RuntimeError``. Both are bad
input here, reported before anything connects.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: The Dask config keys the client role needs for ``tls://``.
CLIENT_KEYS = ("distributed.comm.tls.ca-file", "distributed.comm.tls.client.cert")


def scheme_of(address: str) -> str:
    """``tls`` for ``tls://host:port``; ``tcp`` for a bare ``host:port`` (Dask's default)."""
    return address.split("://", 1)[0].lower() if "://" in address else "tcp"


def tls_problem(
    *,
    address: str,
    get: Callable[[str], object],
    exists: Callable[[str], bool] = os.path.exists,
) -> str | None:
    """What is wrong between ``address`` and the Dask TLS config, or None. Pure given ``get``
    (``dask.config.get`` with a default of None) and ``exists``."""
    scheme = scheme_of(address)
    if scheme == "tls":
        missing = [key for key in CLIENT_KEYS if not get(key)]
        if missing:
            return (
                f"{address!r} is a TLS address, but the Dask config sets no {' / '.join(missing)}. "
                "Run where the workspace's Dask config is (DASK_CONFIG: the workspace pods mount "
                "it, npm run local writes it), or set distributed.comm.tls.ca-file, "
                "distributed.comm.tls.client.cert and distributed.comm.tls.client.key"
            )
        files = [
            str(get(key))
            for key in (*CLIENT_KEYS, "distributed.comm.tls.client.key")
            if get(key) and "\n" not in str(get(key))  # Dask also takes PEM text itself
        ]
        absent = [f for f in files if not exists(f)]
        if absent:
            return (
                f"the Dask TLS files {', '.join(absent)} do not exist; mount the workspace's TLS "
                "Secret there (the runner Job does) or fix distributed.comm.tls.* in the Dask "
                "config"
            )
    elif scheme == "tcp" and get("distributed.comm.require-encryption") is True:
        return (
            f"{address!r} is plain TCP, but the Dask config requires encryption "
            "(distributed.comm.require-encryption); this workspace uses TLS: use "
            f"tls://{address.split('://', 1)[-1]}"
        )
    return None


def config_tls_problem(address: str) -> str | None:
    """:func:`tls_problem` against the current Dask config."""
    import dask.config

    return tls_problem(address=address, get=lambda key: dask.config.get(key, default=None))


def client_ssl_context() -> ssl.SSLContext:
    """The TLS context ``distributed.Client`` itself would use (Dask config, client role)."""
    from distributed.security import Security

    context = Security().get_connection_args("client")["ssl_context"]
    if context is None:  # tls_problem() ran first; this is the same message, just in case
        raise ssl.SSLError("no TLS client certificate in the Dask config")
    return context


def tls_connect(
    target: tuple[str, int],
    timeout: float,
    *,
    context_factory: Callable[[], ssl.SSLContext] = client_ssl_context,
) -> ssl.SSLSocket:
    """A TCP connection to ``target`` with a completed TLS handshake, like
    ``socket.create_connection``. Raises ``ConnectionRefusedError`` and friends as it does, and
    ``ssl.SSLError`` when the scheduler does not accept our certificate or we not its."""
    sock = socket.create_connection(target, timeout)
    try:
        # Dask checks no host names (the CA is the workspace's own; distributed/security.py)
        return context_factory().wrap_socket(sock, server_hostname=None)
    except BaseException:
        sock.close()
        raise
