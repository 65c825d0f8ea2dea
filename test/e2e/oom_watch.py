"""e2e: the runner's pod OOM watcher against the real kube-apiserver, as the runner's own
service account (so the Role the workspace creates is what allows it).

1. ``watcher_from_environment`` loads the in-cluster config from a service-account folder that
   run.sh filled with a token minted for ``dask-runner`` (TokenRequest), the cluster CA and the
   namespace; ``KUBERNETES_SERVICE_HOST``/``_PORT`` point at the API server.
2. Its first poll lists the worker pods (RBAC: list pods) and finds no OOM kill.
3. As the cluster admin, the status of one worker pod gets a container whose last state is
   ``terminated`` with reason ``OOMKilled`` (what the kubelet writes after a kernel OOM kill;
   kwok runs no kubelet, so the admin writes it).
4. The watcher's next poll counts exactly one new pod OOM kill and logs it.

    python test/e2e/oom_watch.py --sa-dir DIR --server https://127.0.0.1:PORT \
        --ca CA --cert ADMIN_CRT --key ADMIN_KEY --selector SELECTOR
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import pathlib
import sys
import time

from dask_workspace.kube import watcher_from_environment
from kubernetes import client


def admin_api(server: str, ca: str, cert: str, key: str) -> client.CoreV1Api:
    conf = client.Configuration()
    conf.host = server
    conf.ssl_ca_cert = ca
    conf.cert_file = cert
    conf.key_file = key
    return client.CoreV1Api(client.ApiClient(conf))


def mark_oom_killed(api: client.CoreV1Api, namespace: str, name: str) -> None:
    """Writes an OOMKilled last state into the pod's first container status (retries on
    conflicts with kwok's own status updates)."""
    for _ in range(20):
        pod = api.read_namespaced_pod_status(name, namespace)
        cs = pod.status.container_statuses[0]
        cs.restart_count = (cs.restart_count or 0) + 1
        cs.last_state = client.V1ContainerState(
            terminated=client.V1ContainerStateTerminated(
                exit_code=137,
                reason="OOMKilled",
                started_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
                finished_at=dt.datetime.now(dt.UTC),
            )
        )
        try:
            api.replace_namespaced_pod_status(name, namespace, pod)
            return
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            time.sleep(0.2)
    raise SystemExit(f"could not update the status of pod {name}: conflicts")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sa-dir", type=pathlib.Path, required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--selector", required=True)
    a = ap.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="oom-watch: %(levelname)s %(message)s"
    )

    watcher = watcher_from_environment(
        selector=a.selector, interval=3600, service_account_dir=a.sa_dir
    )
    if watcher is None:
        print("FAIL: no watcher from the service account in", a.sa_dir)
        return 1
    watcher.poll()  # the baseline: the worker pods as they are
    if watcher.errors:
        print("FAIL: the runner's service account could not list the worker pods")
        return 1
    namespace = (a.sa_dir / "namespace").read_text().strip()
    admin = admin_api(a.server, a.ca, a.cert, a.key)
    pods = admin.list_namespaced_pod(namespace, label_selector=a.selector).items
    if not pods:
        print(f"FAIL: no pod matches {a.selector} in {namespace}")
        return 1
    victim = min(p.metadata.name for p in pods)
    watcher.poll()
    if watcher.new_kills != 0:
        print(f"FAIL: {watcher.new_kills} OOM kills before any happened")
        return 1
    mark_oom_killed(admin, namespace, victim)
    watcher.poll()
    watcher.poll()  # the same kill seen twice still counts once
    if watcher.errors or watcher.new_kills != 1:
        print(
            f"FAIL: expected 1 new pod OOM kill, got {watcher.new_kills} ({watcher.errors} errors)"
        )
        return 1
    print(
        f"the runner's service account lists {len(pods)} worker pods; "
        f"an OOMKilled container in {victim} counted once: new_kills = {watcher.new_kills}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
