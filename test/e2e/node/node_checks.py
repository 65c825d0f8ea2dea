"""The assertions of `npm run test:node` (test/e2e/node.sh), against the real kube-apiserver, the
real Dask scheduler (reached through its Service, so kube-proxy's rules carry the connection) and
the results volume (a hostPath PersistentVolume the test reads directly).

    python test/e2e/node/node_checks.py after-up | scale-down | oom | after-destroy

Reads NODE_IP, API_PORT, PKI, WORK, NAMESPACE, REPLICAS and NPROCS from the environment. Prints
what it saw; exits non-zero with the reason on the first failed check.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow.parquet as pq
from dask.utils import parse_bytes
from distributed import Client
from kubernetes import client

ROOT = pathlib.Path(__file__).resolve().parents[3]
ENV = os.environ
NS = ENV.get("NAMESPACE", "")
WORK = pathlib.Path(ENV.get("WORK", "/nonexistent"))
RESULTS = (
    WORK / "results"
)  # the hostPath behind the results claim, mounted at /results in Jobs
WORKER_SELECTOR = "app.kubernetes.io/component=worker"
SCHEDULER_SELECTOR = "app.kubernetes.io/component=scheduler"


class CheckFailed(Exception):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def say(message: str) -> None:
    print(message, flush=True)


def api_client() -> client.ApiClient:
    conf = client.Configuration()
    conf.host = f"https://{ENV['NODE_IP']}:{ENV['API_PORT']}"
    pki = pathlib.Path(ENV["PKI"])
    conf.ssl_ca_cert = str(pki / "ca.crt")
    conf.cert_file = str(pki / "admin.crt")
    conf.key_file = str(pki / "admin.key")
    return client.ApiClient(conf)


API = api_client()
CORE = client.CoreV1Api(API)
APPS = client.AppsV1Api(API)
BATCH = client.BatchV1Api(API)


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0
) -> Any:
    """Polls ``probe`` until it returns something truthy; fails with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def pods(selector: str) -> list[Any]:
    return CORE.list_namespaced_pod(NS, label_selector=selector).items


def ready(pod: Any) -> bool:
    return any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
    )


def pod_line(pod: Any) -> str:
    statuses = pod.status.container_statuses or []
    restarts = sum(s.restart_count or 0 for s in statuses)
    return f"{pod.metadata.name}: phase {pod.status.phase}, Ready {ready(pod)}, restarts {restarts}"


def events_for(name: str) -> list[Any]:
    return CORE.list_namespaced_event(
        NS, field_selector=f"involvedObject.name={name}"
    ).items


def worker_deployment() -> Any:
    items = APPS.list_namespaced_deployment(NS, label_selector=WORKER_SELECTOR).items
    check(len(items) == 1, f"expected one worker Deployment, found {len(items)}")
    return items[0]


def arg_after(args: list[str], flag: str) -> str:
    check(flag in args, f"{flag} not in {args}")
    return args[args.index(flag) + 1]


def scheduler_address() -> str:
    """The scheduler's Service (its cluster IP: kube-proxy's rules carry the connection)."""
    svcs = CORE.list_namespaced_service(NS, label_selector=SCHEDULER_SELECTOR).items
    check(len(svcs) >= 1, "no scheduler Service")
    svc = svcs[0]
    port = next(
        p.port for p in svc.spec.ports if p.port == 8786 or "comm" in (p.name or "")
    )
    return f"tcp://{svc.spec.cluster_ip}:{port}"


def dask_workers() -> dict[str, dict[str, Any]]:
    with Client(scheduler_address(), timeout=30) as c:
        return c.scheduler_info(n_workers=-1)["workers"]


def job_summary(job: Any) -> dict[str, Any]:
    """The runner's summary as its pod logs it (one line; the file it writes is in the pod's
    scratch directory, gone with the pod)."""
    (pod,) = pods(f"job-name={job.metadata.name}")
    log = CORE.read_namespaced_pod_log(pod.metadata.name, NS)
    lines = [ln for ln in log.splitlines() if " summary {" in ln]
    check(len(lines) == 1, f"no summary line in the log of {pod.metadata.name}")
    return json.loads(lines[0].split(" summary ", 1)[1])


def job_done(name: str) -> str | None:
    job = BATCH.read_namespaced_job(name, NS)
    for c in job.status.conditions or []:
        if c.status == "True" and c.type in ("Complete", "Failed"):
            return c.type
    return None


def parquet_rows(results_dir: pathlib.Path) -> tuple[int, int]:
    files = sorted(results_dir.rglob("*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    return len(files), rows


# --- after-up ------------------------------------------------------------------------------------
def after_up() -> None:
    replicas, nprocs = int(ENV["REPLICAS"]), int(ENV["NPROCS"])
    workers = pods(WORKER_SELECTOR)
    for p in workers:
        say(f"worker {pod_line(p)}")
    check(
        len(workers) == replicas and all(ready(p) for p in workers),
        "worker pods not all Ready",
    )
    dep = worker_deployment()
    c0 = dep.spec.template.spec.containers[0]
    rendered = parse_bytes(arg_after(c0.command + (c0.args or []), "--memory-limit"))
    registered = wait_for(
        f"{replicas * nprocs} worker processes at the scheduler",
        lambda: (w := dask_workers()) and len(w) == replicas * nprocs and w,
        timeout=120,
    )
    limits = sorted({w["memory_limit"] for w in registered.values()})
    say(
        f"workers registered with the scheduler: {len(registered)} (= {replicas} pods x {nprocs}"
        f" processes), memory_limit {limits} (rendered --memory-limit {rendered})"
    )
    check(limits == [rendered], f"memory limits {limits} != rendered {rendered}")

    jobs = BATCH.list_namespaced_job(NS).items
    check(len(jobs) == 2, f"expected 2 Jobs, found {[j.metadata.name for j in jobs]}")
    for job in jobs:
        name = job.metadata.name
        state = wait_for(
            f"Job {name} to finish", lambda n=name: job_done(n), timeout=600
        )
        job = BATCH.read_namespaced_job(name, NS)
        jp = pods(f"job-name={name}")
        say(
            f"Job {name}: {state}, succeeded {job.status.succeeded}, pods {[pod_line(p) for p in jp]}"
        )
        check(
            state == "Complete" and job.status.succeeded == 1,
            f"Job {name} did not succeed",
        )
        s = job_summary(job)
        keys = (
            "status",
            "groups_total",
            "groups_persisted",
            "groups_failed",
            "tasks_submitted",
            "tasks_recomputed",
            "utilization",
            "chunk_sizes",
            "pod_oom_kills",
        )
        say(f"  summary: {json.dumps({k: s.get(k) for k in keys})}")
        check(
            s["groups_total"] > 0 and s["groups_persisted"] == s["groups_total"],
            "groups missing",
        )
        check(s["groups_failed"] == 0, "failed groups")
        args = job.spec.template.spec.containers[0].command
        res = RESULTS / arg_after(args, "--results").removeprefix("/results/")
        files, rows = parquet_rows(res)
        say(f"  results volume: {files} Parquet files, {rows} rows under {res}")
        check(files > 0 and rows > 0, f"no results under {res}")


# --- NetworkPolicy, enforced by kube-router ----------------------------------------------------
# One TCP connection attempt per target, after a pause that lets the policy engine add the new
# pod's rules (it syncs on pod events); a target counts as reachable if any attempt in 10 s
# connects (the targets are tried at once). Prints one "host:port open|closed" line per target.
PROBE = """
import socket, sys, threading, time
time.sleep(8)
def attempt(target):
    host, port = target.rsplit(":", 1)
    deadline, ok, why = time.time() + 10, False, ""
    while not ok and time.time() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=2).close()
            ok = True
        except OSError as exc:
            why = type(exc).__name__
            time.sleep(0.5)
    results[target] = f"{target} {'open' if ok else 'closed'} {why}"
results = {}
threads = [threading.Thread(target=attempt, args=(t,)) for t in sys.argv[1:]]
for t in threads:
    t.start()
for t in threads:
    t.join()
# One line per target, printed once every thread is done (prints from threads interleave).
for t in sys.argv[1:]:
    print(results[t], flush=True)
"""


def probe_pod(
    name: str, namespace: str, labels: dict[str, str], targets: list[str]
) -> Any:
    """Starts a pod (the workspace's Dask image, restricted Pod Security) that tries each target."""
    image = worker_deployment().spec.template.spec.containers[0].image
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            active_deadline_seconds=120,
            security_context=client.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=1000,
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
            ),
            containers=[
                client.V1Container(
                    name="probe",
                    image=image,
                    image_pull_policy="Never",
                    command=["python", "-c", PROBE, *targets],
                    resources=client.V1ResourceRequirements(
                        requests={
                            "cpu": "10m",
                            "memory": "64Mi",
                            "ephemeral-storage": "16Mi",
                        },
                        limits={"memory": "128Mi", "ephemeral-storage": "16Mi"},
                    ),
                    security_context=client.V1SecurityContext(
                        allow_privilege_escalation=False,
                        read_only_root_filesystem=True,
                        capabilities=client.V1Capabilities(drop=["ALL"]),
                    ),
                )
            ],
        ),
    )
    return CORE.create_namespaced_pod(namespace, pod)


def probe_results(name: str, namespace: str) -> dict[str, bool]:
    def finished() -> str | None:
        phase = CORE.read_namespaced_pod(name, namespace).status.phase
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(f"probe pod {namespace}/{name}", finished, timeout=150)
    log = CORE.read_namespaced_pod_log(name, namespace)
    check(phase == "Succeeded", f"probe pod {name} {phase}: {log}")
    out = {}
    for line in log.splitlines():
        words = line.split()
        check(len(words) >= 2, f"probe pod {name}: unreadable line {line!r} in {log!r}")
        out[words[0]] = words[1] == "open"
    return out


def network_policy() -> None:
    """Only this workspace's runner and worker pods reach the scheduler; a pod of another
    namespace does not. Egress too: the API server is open to runner pods only."""
    (sched,) = pods(SCHEDULER_SELECTOR)
    # The workspace's selector labels only: without the ReplicaSet's pod-template-hash no
    # controller adopts (and then deletes) these bare pods.
    keys = ("app.kubernetes.io/name", "app.kubernetes.io/instance")
    labels = {k: sched.metadata.labels[k] for k in keys}
    comm = scheduler_address().removeprefix("tcp://")
    pod_comm = f"{sched.status.pod_ip}:{comm.rsplit(':', 1)[1]}"
    api = f"{ENV['NODE_IP']}:{ENV['API_PORT']}"
    outsider_ns = "dw-outsider"
    CORE.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=outsider_ns))
    )
    wait_for(
        f"the default ServiceAccount of {outsider_ns}",
        lambda: CORE.list_namespaced_service_account(outsider_ns).items,
        timeout=60,
    )
    as_runner = {**labels, "app.kubernetes.io/component": "runner"}
    as_worker = {**labels, "app.kubernetes.io/component": "worker"}
    cases = [
        # name, namespace, labels, {target: expected open}
        # The API server is the outsider's control: its namespace has no policy, so its pod has a
        # network, and only the workspace's policies close the scheduler to it.
        (
            "np-outsider",
            outsider_ns,
            {"app": "outsider"},
            {comm: False, pod_comm: False, api: True},
        ),
        ("np-runner", NS, as_runner, {comm: True, pod_comm: True, api: True}),
        ("np-worker", NS, as_worker, {comm: True, api: False}),
    ]
    try:
        for name, ns, lab, want in cases:
            probe_pod(name, ns, lab, list(want))
        for name, ns, lab, want in cases:
            got = probe_results(name, ns)
            for target, expected in want.items():
                state = "open" if got.get(target) else "closed"
                say(
                    f"{ns}/{name} ({lab.get('app.kubernetes.io/component', 'no workspace labels')}) -> {target}: {state}"
                )
                check(
                    got.get(target) == expected,
                    f"{name} -> {target}: {state}, expected {'open' if expected else 'closed'}",
                )
    finally:
        for name, ns, _, _ in cases:
            try:
                CORE.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            except client.ApiException:
                pass
        CORE.delete_namespace(outsider_ns)
    pols = client.NetworkingV1Api(API).list_namespaced_network_policy(NS).items
    say(f"{len(pols)} NetworkPolicies in {NS}: {sorted(p.metadata.name for p in pols)}")


# --- scheduler probes ---------------------------------------------------------------------------
def scheduler_probes() -> None:
    """Run last (after the jobs, the scale-down and the worker OOM kills), so the probes have run
    for several liveness periods while the cluster worked, and the check also shows the scheduler
    stayed healthy through all of it. Waits only if two liveness periods have not passed yet."""
    (sched,) = pods(SCHEDULER_SELECTOR)
    spec = sched.spec.containers[0]
    check(
        spec.readiness_probe is not None and spec.liveness_probe is not None,
        "scheduler probes",
    )
    # At least two liveness periods after its initial delay: the liveness probe has run twice (and
    # the readiness probe, every 10 s, many times).
    started = sched.status.start_time.timestamp()
    period = spec.liveness_probe.period_seconds or 10
    wait_for(
        "two liveness periods of the scheduler",
        lambda: (
            time.time() - started
            > (spec.liveness_probe.initial_delay_seconds or 0) + 2 * period + 2
        ),
        timeout=600,
    )
    sched = CORE.read_namespaced_pod(sched.metadata.name, NS)
    unhealthy = [e for e in events_for(sched.metadata.name) if e.reason == "Unhealthy"]
    say(f"scheduler {pod_line(sched)}; Unhealthy probe events {len(unhealthy)}")
    say(
        f"  readiness {probe_text(spec.readiness_probe)}; liveness {probe_text(spec.liveness_probe)}"
    )
    check(
        sched.status.phase == "Running" and ready(sched),
        "the scheduler pod is not Running and Ready",
    )
    check(
        sum(s.restart_count for s in sched.status.container_statuses) == 0,
        "the scheduler restarted",
    )
    check(not unhealthy, f"probe failures: {[e.message for e in unhealthy]}")


def probe_text(p: Any) -> str:
    how = (
        f"httpGet {p.http_get.path}:{p.http_get.port}"
        if p.http_get
        else f"tcp {p.tcp_socket.port}"
        if p.tcp_socket
        else f"exec {p._exec.command}"
        if p._exec
        else "?"
    )
    return f"{how} every {p.period_seconds}s, failureThreshold {p.failure_threshold}"


# --- a runner Job of our own, cloned from the rendered one ---------------------------------------
def run_clone(name: str, study_yaml: str, files: dict[str, str]) -> str:
    """Creates a Job that is the stack's sir-grid Job with another study: a ConfigMap holds the
    study and its module, and the runner writes under /results/<name>. Returns the Job's name."""
    (base,) = [
        j for j in BATCH.list_namespaced_job(NS).items if "sir-grid" in j.metadata.name
    ]
    CORE.create_namespaced_config_map(
        NS,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"{name}-study"),
            data={"study.yaml": study_yaml, **files},
        ),
    )
    tpl = copy.deepcopy(base.spec.template)
    for key in list(tpl.metadata.labels or {}):
        if "controller-uid" in key or "job-name" in key:
            del tpl.metadata.labels[key]
    c0 = tpl.spec.containers[0]
    cmd = list(c0.command)
    cmd[cmd.index("run") + 1] = "/study/study.yaml"
    cmd[cmd.index("--results") + 1] = f"/results/{name}"
    cmd[cmd.index("--summary") + 1] = f"/results/{name}/summary.json"
    c0.command = cmd
    for v in tpl.spec.volumes:
        if v.name == "study":
            v.config_map = client.V1ConfigMapVolumeSource(name=f"{name}-study")
    job = client.V1Job(
        metadata=client.V1ObjectMeta(
            name=name, labels=dict(base.metadata.labels or {})
        ),
        spec=client.V1JobSpec(backoff_limit=0, template=tpl),
    )
    BATCH.create_namespaced_job(NS, job)
    return name


def leaky_study(
    name: str, groups: int, seconds: float, leak_mib: int, shared_mib: int
) -> str:
    return json.dumps(
        {
            "name": name,
            "model": "leaky:simulate",
            "targets": {"mean": "leaky:mean_value"},
            "parameters": {
                "grid": {
                    "k": {"start": 0, "stop": groups - 1, "num": groups},
                    "leak_mib": leak_mib,
                    "shared_mib": shared_mib,
                    "seconds": seconds,
                }
            },
            "replicates": 4,
            "seed": 7,
        }
    )


LEAKY = (ROOT / "examples/studies/leak/leaky.py").read_text()


def task_pid(container_id: str) -> int:
    """The host PID of a container's main process, from containerd."""
    out = subprocess.run(
        ["ctr", "--address", ENV["CTRD_SOCK"], "--namespace", "k8s.io", "tasks", "ls"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1])
    raise CheckFailed(f"container {container_id} has no task in containerd")


def runner_pod(job: str) -> Any:
    ps = pods(f"job-name={job}")
    return ps[0] if ps else None


def scheduler_log() -> str:
    (sched,) = pods(SCHEDULER_SELECTOR)
    return CORE.read_namespaced_pod_log(sched.metadata.name, NS)


# --- scale-down ----------------------------------------------------------------------------------
def scale_down() -> None:
    nprocs = int(ENV["NPROCS"])
    name = run_clone(
        "node-hold", leaky_study("hold", 32, 0.5, 0, 0), {"leaky.py": LEAKY}
    )
    out = RESULTS / name

    def held() -> dict[str, int]:
        """Results held in worker memory, per worker pod (the pod name prefixes the worker's)."""
        with Client(scheduler_address(), timeout=30) as c:
            info = c.scheduler_info(n_workers=-1)["workers"]
            per_pod: dict[str, int] = {}
            for addr, keys in c.has_what().items():
                pod = str(info.get(addr, {}).get("name", addr)).rsplit("-", 1)[0]
                per_pod[pod] = per_pod.get(pod, 0) + len(keys)
            return per_pod

    # The study holds results: task results in the memory of both worker pods.
    holding = wait_for(
        "both worker pods holding results of the hold study",
        lambda: (h := held()) and len([n for n in h.values() if n > 0]) >= 2 and h,
        timeout=300,
        interval=0.5,
    )
    say(f"results held in worker memory before the scale-down: {holding}")
    before = {p.metadata.name for p in pods(WORKER_SELECTOR)}
    dep = worker_deployment()
    t0 = time.monotonic()
    APPS.patch_namespaced_deployment_scale(
        dep.metadata.name, NS, {"spec": {"replicas": 1}}
    )
    say(f"scaled {dep.metadata.name} 2 -> 1")
    gone = wait_for(
        "a worker pod to terminate",
        lambda: (
            (left := {p.metadata.name for p in pods(WORKER_SELECTOR)}) < before
            and before - left
        ),
        timeout=300,
    )
    say(
        f"worker pod {sorted(gone)} terminated {time.monotonic() - t0:.1f} s after the scale-down"
    )
    state = wait_for("the hold study's Job", lambda: job_done(name), timeout=600)
    s = json.loads((out / "summary.json").read_text())
    keys = (
        "status",
        "groups_total",
        "groups_persisted",
        "tasks_recomputed",
        "worker_deaths",
        "tasks_submitted",
    )
    say(f"Job {name}: {state}; summary {json.dumps({k: s.get(k) for k in keys})}")
    retired = [ln for ln in scheduler_log().splitlines() if "etir" in ln]
    say(f"scheduler log, retirement lines: {len(retired)}")
    for ln in retired[:6]:
        say(f"  {ln.strip()[:200]}")
    failed_hooks = [
        e for g in gone for e in events_for(g) if e.reason == "FailedPreStopHook"
    ]
    check(not failed_hooks, f"preStop hook failed: {[e.message for e in failed_hooks]}")
    check(retired, "the scheduler logged no retirement: the preStop retire did not run")
    check(state == "Complete", "the hold study's Job did not complete")
    check(
        s["groups_persisted"] == s["groups_total"],
        "groups missing after the scale-down",
    )
    check(s["tasks_recomputed"] == 0, f"{s['tasks_recomputed']} tasks recomputed")
    check(s.get("worker_deaths", 0) == 0, "a retired worker counted as a death")
    check(
        len(dask_workers()) == nprocs,
        "the scheduler still lists the retired pod's workers",
    )


# --- oom -----------------------------------------------------------------------------------------
MI = 2**20


def oom() -> None:
    """The reliability suite's zero-headroom case (test/reliability/leak.test.ts) in a real pod:
    1 pod of 1Gi, 2 worker processes with --memory-limit 512Mi each (the limits sum to the pod
    limit, which validation refuses), /dev/shm in memory for the leak study's shared table. The
    worker Deployment is patched directly, bypassing the stack's validation."""
    dep = worker_deployment()
    c0 = dep.spec.template.spec.containers[0]
    nprocs = int(ENV["NPROCS"])
    cmd = list(c0.command)
    i = cmd.index("--memory-limit") + 1
    old = cmd[i]
    cmd[i] = str(1024 * MI // nprocs)
    patch = {
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": c0.name,
                            "command": cmd,
                            "resources": {
                                "limits": {"memory": "1Gi"},
                                "requests": {"memory": "1Gi"},
                            },
                            "volumeMounts": [
                                {"name": "node-shm", "mountPath": "/dev/shm"}
                            ],
                        }
                    ],
                    "volumes": [{"name": "node-shm", "emptyDir": {"medium": "Memory"}}],
                }
            },
        }
    }
    APPS.patch_namespaced_deployment(dep.metadata.name, NS, patch)
    say(
        f"worker pod limit 1Gi, --memory-limit {old} -> {cmd[i]} x {nprocs} processes: zero headroom"
    )

    def rolled() -> bool:
        ps = [p for p in pods(WORKER_SELECTOR) if p.metadata.deletion_timestamp is None]
        return (
            len(ps) == 1 and ready(ps[0]) and cmd[i] in ps[0].spec.containers[0].command
        )

    wait_for("the zero-headroom worker pod", rolled, timeout=300)
    # This machine has cgroup v1: there the kernel kills one process of a container that runs out
    # of memory (by its own choice the largest, a worker process), the nanny starts it again and
    # the container lives on, so the kubelet has no OOMKilled to report. On cgroup v2 nodes
    # (AKS's default) the kubelet has the kernel kill all of a container's processes together
    # (memory.oom.group): the container ends, OOMKilled. To reproduce that end here, the
    # container's main process (the nanny host) is made the kernel's first choice: its
    # oom_score_adj is raised to 1000 from the node (raising needs no privilege), and every other
    # process of the container is kept at the container's own score (a worker the nanny starts
    # inherits 1000 from it; lowering back to the container's score is allowed without
    # CAP_SYS_RESOURCE, which this machine's root lacks). The OOM itself is still the kernel's,
    # caused by the zero headroom; the kubelet and containerd report it as they would anywhere.
    (pod,) = [p for p in pods(WORKER_SELECTOR) if p.metadata.deletion_timestamp is None]
    uid = pod.metadata.uid
    (oom_control,) = pathlib.Path("/sys/fs/cgroup/memory").glob(
        f"kubepods/**/pod{uid}/memory.oom_control"
    )
    limit = int((oom_control.parent / "memory.limit_in_bytes").read_text())
    say(
        f"worker pod {pod.metadata.name}: memory cgroup limit {limit} bytes ({oom_control.parent})"
    )
    check(limit == 1024 * MI, f"the pod's memory cgroup limit is {limit}, not 1Gi")
    cid = pod.status.container_statuses[0].container_id.split("://", 1)[1]
    main_pid = task_pid(cid)
    (procs,) = oom_control.parent.glob(f"**/{cid}/cgroup.procs")
    base = pathlib.Path(f"/proc/{main_pid}/oom_score_adj").read_text().strip()
    pathlib.Path(f"/proc/{main_pid}/oom_score_adj").write_text("1000")
    stop = threading.Event()
    lowered: list[int] = []

    def others_at_base() -> None:
        while not stop.wait(0.02):
            try:
                pids = [int(p) for p in procs.read_text().split()]
            except OSError:
                return  # the container is gone (its main process was killed)
            for p in pids:
                adj = pathlib.Path(f"/proc/{p}/oom_score_adj")
                with contextlib.suppress(OSError):  # a process that just exited
                    if p != main_pid and adj.read_text().strip() != base:
                        adj.write_text(base)
                        lowered.append(p)

    keeper = threading.Thread(target=others_at_base, daemon=True)
    keeper.start()
    say(
        f"worker container {cid[:12]}: main process {main_pid} oom_score_adj {base} -> 1000, "
        f"its other processes kept at {base}"
    )

    def oom_kills() -> int:
        """The kernel's count of processes it OOM-killed in the pod (cgroup v1 counts each kill in
        the victim's own cgroup: the container's, below the pod's)."""
        total = 0
        for f in oom_control.parent.glob("**/memory.oom_control"):
            with contextlib.suppress(OSError):  # a container's cgroup that just went away
                fields = dict(ln.split() for ln in f.read_text().splitlines())
                total += int(fields.get("oom_kill", 0))
        return total

    def oom_killed() -> list[str]:
        """Worker containers whose kubelet status says OOMKilled (now or as the last state)."""
        out = []
        for p in pods(WORKER_SELECTOR):
            for c in p.status.container_statuses or []:
                for st in (c.last_state, c.state):
                    t = st.terminated if st else None
                    if t is not None and t.reason == "OOMKilled":
                        out.append(f"{p.metadata.name}/{c.name} exit {t.exit_code}")
        return out

    study = (ROOT / "examples/studies/leak/leak.yaml").read_text()
    name = run_clone("node-leak", study, {"leaky.py": LEAKY})
    t0 = time.monotonic()
    try:
        wait_for(
            "a kernel OOM kill in the worker pod's memory cgroup",
            oom_kills,
            timeout=300,
            interval=0.2,
        )
        say(
            f"kernel OOM kill in the pod's memory cgroup {time.monotonic() - t0:.1f} s after the "
            "study started"
        )
        killed = wait_for("an OOMKilled worker container (kubelet status)", oom_killed, 120)
        say(f"kubelet status {time.monotonic() - t0:.1f} s after the study started: {killed}")
    finally:
        stop.set()
    state = wait_for("the leak study's Job", lambda: job_done(name), timeout=600)
    s = json.loads((RESULTS / name / "summary.json").read_text())
    keys = (
        "status",
        "groups_persisted",
        "groups_total",
        "worker_deaths",
        "pod_oom_kills",
    )
    say(f"Job {name}: {state}; summary {json.dumps({k: s.get(k) for k in keys})}")
    statuses = [
        (
            c.restart_count,
            c.last_state.terminated.reason if c.last_state.terminated else None,
        )
        for p in pods(WORKER_SELECTOR)
        for c in p.status.container_statuses or []
    ]
    say(
        f"kernel OOM kills in the pod: {oom_kills()}; worker processes kept at the container's "
        f"score: {len(set(lowered))}; worker container (restarts, last termination): {statuses}"
    )
    check(
        (s.get("pod_oom_kills") or 0) >= 1,
        "the runner's pod watcher counted no OOMKilled container from the kubelet's status",
    )
    check(s["groups_persisted"] == s["groups_total"], "groups lost to the OOM kills")
    for job in ("node-hold", "node-leak"):
        BATCH.delete_namespaced_job(job, NS, propagation_policy="Background")
        CORE.delete_namespaced_config_map(f"{job}-study", NS)


# --- after-destroy -------------------------------------------------------------------------------
def after_destroy() -> None:
    def quiet() -> bool:
        return not [
            p
            for p in CORE.list_namespaced_pod(NS).items
            if p.status.phase in ("Running", "Pending")
        ]

    wait_for("every pod of the namespace to stop", quiet, timeout=180)
    left = [p.metadata.name for p in CORE.list_namespaced_pod(NS).items]
    say(f"pods left in {NS}: {left}")
    deps = APPS.list_namespaced_deployment(NS).items
    check(not deps, f"Deployments left: {[d.metadata.name for d in deps]}")


def main() -> int:
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    steps = {
        "after-up": after_up,
        "scheduler-probes": scheduler_probes,
        "network-policy": network_policy,
        "scale-down": scale_down,
        "oom": oom,
        "after-destroy": after_destroy,
    }
    if what not in steps:
        print(f"usage: node_checks.py {'|'.join(steps)}", file=sys.stderr)
        return 2
    try:
        steps[what]()
    except CheckFailed as exc:
        print(f"node check {what}: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
