"""Connecting to the scheduler: a refused connection fails in seconds, naming the address.

``distributed.Client`` retries a refused connection until its timeout (60 s). Outside
Kubernetes a refused connection means nothing listens there (a wrong port, a workspace that is
not up), so the runner gives up after ``workspace.runner.connect-refused-timeout`` (3 s) with the
address it tried. In a Kubernetes pod the scheduler may still be starting (a Service without
ready endpoints refuses connections), so the full ``connect-timeout`` applies there.

For a ``tls://`` address the probe completes a TLS handshake with the Dask config's client
certificate (``dask_workspace.tls``): a bare TCP connect would make the scheduler log a failed
handshake, and a certificate the scheduler refuses is reported at once instead of as a timeout.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections.abc import Callable, Mapping

from dask_workspace.errors import ClusterError
from dask_workspace.tls import scheme_of, tls_connect

logger = logging.getLogger(__name__)


def in_kubernetes(environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


def refused_grace(*, refused_timeout: float, connect_timeout: float, kubernetes: bool) -> float:
    """How long refused connections are retried before giving up. Pure."""
    return connect_timeout if kubernetes else min(refused_timeout, connect_timeout)


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``tcp://`` / ``tls://`` address, None for anything else."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return None
        host, port = parse_host_port(loc)
    except (ValueError, TypeError):
        return None
    return (host, int(port)) if port else None


def probe(
    address: str,
    *,
    grace: float,
    connect_timeout: float,
    connect: Callable[[tuple[str, int], float], object] | None = None,
) -> None:
    """Returns once something accepts TCP connections at ``address``.

    Raises:
        ClusterError: connections were refused (or the name did not resolve) for ``grace``
            seconds, nothing answered within ``connect_timeout``, or (``tls://``) the TLS
            handshake failed.
    """
    target = host_port(address)
    if target is None:
        return  # not TCP: leave it to the client
    if connect is None:
        connect = tls_connect if scheme_of(address) == "tls" else socket.create_connection
    started = time.monotonic()
    refused_since: float | None = None
    last: OSError | None = None
    while True:
        try:
            sock = connect(target, min(2.0, connect_timeout))
        except (ConnectionRefusedError, socket.gaierror) as exc:
            last = exc
            refused_since = refused_since if refused_since is not None else time.monotonic()
            if time.monotonic() - refused_since >= grace:
                raise ClusterError(
                    f"cannot reach the Dask scheduler at {address}: "
                    f"{'connection refused' if isinstance(exc, ConnectionRefusedError) else exc} "
                    f"for {time.monotonic() - started:.0f}s. Check --scheduler "
                    "(tcp://HOST:8786, or tls://HOST:8786 with TLS) and that the workspace is up "
                    "(npm run local starts one)."
                ) from None
        except ssl.SSLError as exc:
            raise ClusterError(
                f"TLS handshake with the Dask scheduler at {address} failed ({exc}). The "
                "scheduler must serve TLS and accept the certificate in the Dask config "
                "(distributed.comm.tls.client.cert), signed by the workspace's CA."
            ) from None
        except OSError as exc:  # timeouts, unreachable networks: keep trying until the timeout
            last = exc
            refused_since = None
        else:
            close = getattr(sock, "close", None)
            if close is not None:
                close()
            return
        if time.monotonic() - started >= connect_timeout:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address} within {connect_timeout:.0f}s "
                f"({last}). Check --scheduler (tcp://HOST:8786) and that the scheduler is running."
            )
        time.sleep(0.25)
