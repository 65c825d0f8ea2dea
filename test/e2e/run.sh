#!/usr/bin/env bash
# `npm run test:e2e`: the real Pulumi CLI against a real kube-apiserver, on a copy of the `local`
# stack. Everything listens on 127.0.0.1 only and lives in one temporary directory; the control
# plane is torn down on every exit path.
#
#   preview (server-side dry run) → up (rollouts awaited on kwok nodes; a job whose study has its
#   own package) → the runner's pod OOM watcher, as the runner's service account, counts an
#   OOMKilled worker container → the own-package study's bundle as the API server holds it → preview
#   --expect-no-changes → edit workers.nprocs → preview (exactly the expected change) → up →
#   preview --expect-no-changes → enable autoscaling → preview → up → the HPA scales the workers →
#   preview --expect-no-changes → destroy (the results claim and its namespace are kept) →
#   namespace deleted
#
# Tools come from test/e2e/tools.sh (built once from the Go module proxy, cached under
# ~/.cache/dask-workspace/). See docs/e2e.md.
#
# Environment:
#   E2E_KEEP=1              keep the temporary directory (logs, state, kubeconfig) after the run
#   E2E_NPROCS=N            the workers.nprocs value for the config edit (default: derived)
#   DASK_WORKSPACE_CACHE    the tools cache (default ~/.cache/dask-workspace)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/test/e2e"
# shellcheck source=test/e2e/lib.sh
. "$HERE/lib.sh"
STACK="local"
START_TS=$(date +%s)

say() { printf '\n== e2e: %s\n' "$*"; }
fail() {
  echo "e2e: FAILED: $*" >&2
  exit 1
}

# --- tools ------------------------------------------------------------------------------------
bash "$ROOT/scripts/ensure-node.sh"
say "tools"
bash "$HERE/tools.sh" || fail "the e2e tools could not be built (see above; docs/e2e.md explains each one)"
eval "$(bash "$HERE/tools.sh" --env)"
echo "language host: $E2E_LANGHOST"
echo "kubernetes provider: $E2E_PROVIDER"
# Our test language host's own unit tests (real gRPC, real node), whichever host this run uses.
say "language host unit tests (go test ./test/e2e/langhost)"
(cd "$HERE/langhost" && GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOCACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}/go-build" \
  GONOSUMDB=github.com/pulumi/pulumi go test -count=1 ./...) || fail "the language host's unit tests failed"
CACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}"
BIN="$CACHE/bin"
TSX="$ROOT/node_modules/.bin/tsx"

# --- temporary directory and teardown ---------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dask-workspace-e2e.XXXXXX")"
PIDS=()
NAMES=()
teardown() {
  local code=$?
  set +e
  if ((${#PIDS[@]} > 0)); then
    say "teardown"
    local i
    # Reverse start order: kwok and controllers before the apiserver, etcd last.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      kill -TERM "${PIDS[$i]}" 2>/dev/null
      for _ in $(seq 1 50); do
        kill -0 "${PIDS[$i]}" 2>/dev/null || break
        sleep 0.2
      done
      kill -KILL "${PIDS[$i]}" 2>/dev/null
      wait "${PIDS[$i]}" 2>/dev/null
      echo "stopped ${NAMES[$i]} (pid ${PIDS[$i]})"
    done
  fi
  if [[ "$code" != 0 ]]; then
    echo "e2e: logs in $WORK/logs" >&2
    for f in "$WORK"/logs/*.log; do
      [[ -f "$f" ]] || continue
      echo "---- last lines of $f" >&2
      tail -n 15 "$f" >&2
    done
  fi
  if [[ "${E2E_KEEP:-0}" == 1 || "$code" != 0 ]]; then
    echo "e2e: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  echo "e2e: wall time $(($(date +%s) - START_TS))s"
  exit "$code"
}
trap teardown EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK/logs" "$WORK/pki" "$WORK/state"

free_port() {
  node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# --- certificates and kubeconfig --------------------------------------------------------------
say "certificates (openssl) and kubeconfig"
PKI="$WORK/pki"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1" # first address of SERVICE_CIDR: the `kubernetes` Service
gen_pki() {
  cd "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.crt -subj "/CN=dask-workspace-e2e-ca"
  # apiserver serving certificate: loopback and the in-cluster names.
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout apiserver.key \
    -out apiserver.csr -subj "/CN=kube-apiserver"
  printf 'subjectAltName=IP:127.0.0.1,IP:%s,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n' \
    "$SERVICE_IP" >apiserver.ext
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile apiserver.ext -out apiserver.crt
  # One admin client identity (group system:masters) for Pulumi, the controllers and kwok.
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout admin.key \
    -out admin.csr -subj "/O=system:masters/CN=e2e-admin"
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile client.ext -out admin.crt
  # Service-account token signing key pair.
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
}
(gen_pki) >"$WORK/logs/pki.log" 2>&1 || fail "openssl; see $WORK/logs/pki.log"

ETCD_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
API_PORT=$(free_port)
KWOK_PORT=$(free_port)
KUBECONFIG="$WORK/kubeconfig"
export KUBECONFIG
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster:
      server: https://127.0.0.1:$API_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: e2e-admin
    user:
      client-certificate: $PKI/admin.crt
      client-key: $PKI/admin.key
contexts:
  - name: e2e
    context: { cluster: e2e, user: e2e-admin }
current-context: e2e
EOF

# api METHOD PATH [BODY]: one request to the apiserver as e2e-admin.
api() {
  curl -sS --fail-with-body --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    -X "$1" -H 'Content-Type: application/json' ${3:+--data "$3"} "https://127.0.0.1:$API_PORT$2"
}

# --- control plane ----------------------------------------------------------------------------
say "control plane on 127.0.0.1 (etcd :$ETCD_PORT, kube-apiserver :$API_PORT)"
CP_START=$(date +%s)
start etcd "$BIN/etcd" --name e2e --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level warn

start kube-apiserver "$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" \
  --authorization-mode RBAC \
  --endpoint-reconciler-type none \
  --cert-dir "$WORK/apiserver" \
  --profiling=false

for _ in $(seq 1 240); do
  alive etcd
  alive kube-apiserver
  if [[ "$(api GET /readyz 2>/dev/null)" == ok ]]; then break; fi
  sleep 0.5
done
[[ "$(api GET /readyz 2>/dev/null)" == ok ]] || fail "kube-apiserver not ready after 120s"
KUBE_SERVER_VERSION="$(api GET /version | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).gitVersion))')"
echo "kube-apiserver $KUBE_SERVER_VERSION ready in $(($(date +%s) - CP_START))s"

start kube-controller-manager "$BIN/kube-controller-manager" \
  --kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" \
  --authorization-kubeconfig "$KUBECONFIG" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=false \
  --service-cluster-ip-range "$SERVICE_CIDR"
# kube-scheduler binds pods to the kwok nodes; kwok plays their kubelets, so pods become Running and
# Ready and `pulumi up` awaits real Deployment rollouts and Service endpoints. kwok also renews the
# nodes' Leases: without them the node lifecycle controller declares the nodes NotReady after its
# grace period and marks every pod on them unready (seen here: a rollout that never completes).
start kube-scheduler "$BIN/kube-scheduler" \
  --kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" \
  --authorization-kubeconfig "$KUBECONFIG" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
start kwok "$BIN/kwok" --kubeconfig "$KUBECONFIG" --config "$CACHE/share/kwok-stages.yaml" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
  --cidr 10.244.0.0/16 --node-ip 10.0.0.2 --server-address "127.0.0.1:$KWOK_PORT" \
  --node-lease-duration-seconds 40
# Two simulated nodes, big enough for the local stack's pods (ephemeral-storage too: every
# workspace container requests some, and a node that reports none fits no pod).
for n in 0 1; do
  api POST /api/v1/nodes "$(
    cat <<EOF
{"apiVersion":"v1","kind":"Node","metadata":{"name":"kwok-node-$n",
 "annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},
 "labels":{"kubernetes.io/hostname":"kwok-node-$n","kubernetes.io/os":"linux","kubernetes.io/arch":"amd64","type":"kwok"}},
 "status":{"capacity":{"cpu":"32","memory":"256Gi","ephemeral-storage":"200Gi","pods":"110"},"allocatable":{"cpu":"32","memory":"256Gi","ephemeral-storage":"200Gi","pods":"110"}}}
EOF
  )" >/dev/null
done
for _ in $(seq 1 120); do
  alive kwok
  ready_nodes="$(api GET /api/v1/nodes | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const nodes = JSON.parse(s).items;
      console.log(nodes.filter((n) => (n.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")).length);
    });')"
  [[ "$ready_nodes" == 2 ]] && break
  sleep 0.5
done
[[ "$ready_nodes" == 2 ]] || fail "kwok nodes not Ready after 60s"
echo "2 kwok nodes Ready"
# The controller-manager creates each namespace's `default` ServiceAccount; wait for it so pods
# are not rejected by the ServiceAccount admission plugin.
for _ in $(seq 1 120); do
  alive kube-controller-manager
  api GET /api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1 && break
  sleep 0.5
done
echo "control plane up in $(($(date +%s) - CP_START))s"

# --- the Pulumi project copy ------------------------------------------------------------------
say "pulumi project copy of stack '$STACK'"
PROJECT="$WORK/project"
[[ -f "$ROOT/Pulumi.$STACK.yaml" ]] || fail "no Pulumi.$STACK.yaml in $ROOT"
project_copy "$ROOT" "$PROJECT"
cp "$ROOT/Pulumi.$STACK.yaml" "$PROJECT/"

export PULUMI_BACKEND_URL="file://$WORK/state"
export PULUMI_CONFIG_PASSPHRASE="test"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
cd "$PROJECT"

pulumi version
PULUMI_VERSION_OUT="$(pulumi version)"
# Flags for every engine command: no interactive UI, and no up-front download of every plugin that
# node_modules mentions (the Azure provider is not needed for target kubernetes and cannot be
# downloaded here); plugins load when the program uses them.
ENGINE_FLAGS=(--non-interactive --skip-plugin-pre-install --color never)

STEP_TIMES=()
step() {
  local label="$1" t0
  shift
  say "$label"
  t0=$(date +%s)
  "$@"
  STEP_TIMES+=("$label: $(($(date +%s) - t0))s")
}

step "pulumi stack init $STACK" pulumi stack init "$STACK" --non-interactive
pulumi config --show-secrets=false
NAMESPACE="$(pulumi config get namespace)"
REPLICAS="$(pulumi config get --path workers.replicas)"
# A job whose study has its own model package (examples/studies/own-model/ownmodel/): its bundle
# must reach the API server in the study ConfigMap, laid out under /study by the Job's volume.
pulumi config set --path 'jobs.own-model.study' examples/studies/own-model/study.yaml

# preview_json FILE: `pulumi preview --json` into FILE (the engine's own machine-readable plan).
preview_json() { pulumi preview "${ENGINE_FLAGS[@]}" --json >"$1"; }

# expect_pods COMPONENT=N...: the live pods of the workspace, Ready as kwok reports them.
expect_pods() {
  local args=() c
  for c in "$@"; do args+=(--ready "$c"); done
  api GET "/api/v1/namespaces/$NAMESPACE/pods" >"$WORK/pods.json"
  "$TSX" "$HERE/checks.ts" pods "$WORK/pods.json" "${args[@]}"
}

step "pulumi preview (server-side dry run against the empty cluster)" \
  preview_json "$WORK/preview-create.json"
"$TSX" "$HERE/checks.ts" creates "$WORK/preview-create.json"

step "pulumi up --yes" pulumi up --yes "${ENGINE_FLAGS[@]}"
pulumi stack export >"$WORK/stack-after-up.json"
"$TSX" "$HERE/checks.ts" counts "$WORK/stack-after-up.json"
expect_pods "worker=$REPLICAS" scheduler=1

# oom_watch: the runner's pod OOM watcher, as the runner's own service account (test/e2e/oom_watch.py).
oom_watch() {
  local sa selector dir="$WORK/serviceaccount"
  api GET "/api/v1/namespaces/$NAMESPACE/serviceaccounts" >"$WORK/serviceaccounts.json"
  sa="$(node -e 'const l = require(process.argv[1]).items.map((i) => i.metadata.name).filter((n) => n !== "default"); if (l.length !== 1) { console.error("service accounts:", l); process.exit(1); } console.log(l[0]);' "$WORK/serviceaccounts.json")"
  api GET "/apis/apps/v1/namespaces/$NAMESPACE/deployments?labelSelector=app.kubernetes.io%2Fcomponent%3Dworker" >"$WORK/worker-deployments.json"
  selector="$(node -e 'const d = require(process.argv[1]).items[0]; console.log(Object.entries(d.spec.selector.matchLabels).map(([k, v]) => `${k}=${v}`).join(","));' "$WORK/worker-deployments.json")"
  mkdir -p "$dir"
  api POST "/api/v1/namespaces/$NAMESPACE/serviceaccounts/$sa/token" \
    '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}' \
    | node -e 'let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => process.stdout.write(JSON.parse(s).status.token));' >"$dir/token"
  cp "$PKI/ca.crt" "$dir/ca.crt"
  printf '%s' "$NAMESPACE" >"$dir/namespace"
  bash "$ROOT/scripts/ensure-venv.sh" >/dev/null
  echo "service account $sa, worker pods $selector"
  KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$API_PORT" \
    "$ROOT/.venv/bin/python" "$HERE/oom_watch.py" --sa-dir "$dir" \
    --server "https://127.0.0.1:$API_PORT" --ca "$PKI/ca.crt" --cert "$PKI/admin.crt" \
    --key "$PKI/admin.key" --selector "$selector"
}
step "the runner's OOM watcher sees an OOMKilled worker container (as the runner's service account)" oom_watch

# own_model_bundle: the study bundle as the API server stored it, against the runner's own view
# (`python -m dask_workspace bundle --json`): the same files in the ConfigMap and the Job's volume
# items, the same hash on the Job's pod template; and the results claim the Jobs mount.
own_model_bundle() {
  api GET "/api/v1/namespaces/$NAMESPACE/configmaps/dask-study-own-model" >"$WORK/own-model-cm.json"
  api GET "/apis/batch/v1/namespaces/$NAMESPACE/jobs/dask-job-own-model" >"$WORK/own-model-job.json"
  api GET "/api/v1/namespaces/$NAMESPACE/persistentvolumeclaims/dask-results" >"$WORK/results-pvc.json"
  "$ROOT/.venv/bin/python" -m dask_workspace bundle "$ROOT/examples/studies/own-model/study.yaml" --json \
    >"$WORK/own-model-bundle.json"
  node -e '
    const [cm, job, bundle] = process.argv.slice(1).map((f) => require(f));
    const pod = job.spec.template;
    const items = pod.spec.volumes.find((v) => v.name === "study").configMap.items;
    const mounts = pod.spec.containers[0].volumeMounts.map((m) => `${m.name}:${m.mountPath}`);
    const fail = (m) => { console.error(`own-model bundle: ${m}`); process.exit(1); };
    const want = bundle.files.map((f) => f.path);
    if (JSON.stringify(items.map((i) => i.path)) !== JSON.stringify(want)) fail(`items ${JSON.stringify(items)} != ${want}`);
    items.forEach((it, i) => {
      const size = Buffer.from(cm.binaryData[it.key], "base64").length;
      if (size !== bundle.files[i].size) fail(`${it.path}: ${size} bytes in the ConfigMap, ${bundle.files[i].size} on disk`);
    });
    if (pod.metadata.annotations["dask-workspace/bundle-sha256"] !== bundle.hash) fail("bundle hash differs");
    if (!mounts.includes("results:/results")) fail(`no results volume at /results: ${mounts}`);
    console.log(`own-model bundle: ${want.join(", ")} (hash ${bundle.hash.slice(0, 12)}), results claim mounted`);
  ' "$WORK/own-model-cm.json" "$WORK/own-model-job.json" "$WORK/own-model-bundle.json"
}
step "a study with its own package: its bundle in the ConfigMap and the Job (as the runner sees it)" own_model_bundle

step "pulumi preview --expect-no-changes (no perpetual diff)" \
  pulumi preview --expect-no-changes --diff "${ENGINE_FLAGS[@]}"

# --- config edit: workers.nprocs ----------------------------------------------------------------
OLD_NPROCS="$(pulumi config get --path workers.nprocs 2>/dev/null || true)"
NEW_NPROCS="${E2E_NPROCS:-}"
if [[ -z "$NEW_NPROCS" ]]; then
  # Fewer processes always fit the pod (more memory each); from 1, go to 2.
  if [[ -n "$OLD_NPROCS" && "$OLD_NPROCS" -gt 1 ]]; then NEW_NPROCS=$((OLD_NPROCS - 1)); else NEW_NPROCS=2; fi
fi
say "config edit: workers.nprocs ${OLD_NPROCS:-<default>} -> $NEW_NPROCS"
pulumi config set --path workers.nprocs "$NEW_NPROCS"

step "pulumi preview after the nprocs edit" preview_json "$WORK/preview-nprocs.json"
# Exactly the worker Deployment changes, in place (its `dask worker` command: --nworkers and the
# per-process --memory-limit); the Dask config ConfigMap may change with it; nothing else may.
"$TSX" "$HERE/checks.ts" changes "$WORK/preview-nprocs.json" \
  --require "kubernetes:apps/v1:Deployment@worker=update" \
  --allow "kubernetes:core/v1:ConfigMap@config=update,replace,create-replacement,delete-replaced"

step "pulumi up --yes (the nprocs edit: a real rolling update)" pulumi up --yes "${ENGINE_FLAGS[@]}"
expect_pods "worker=$REPLICAS" scheduler=1
step "pulumi preview --expect-no-changes (after the nprocs edit)" \
  pulumi preview --expect-no-changes --diff "${ENGINE_FLAGS[@]}"

# --- config edit: autoscaling on, with minReplicas above workers.replicas ---------------------
# The HPA controller then scales the worker Deployment to minReplicas. If the program still set
# `replicas`, Pulumi and the HPA would fight over it and the next preview would show a diff.
MIN_REPLICAS=$((REPLICAS + 1))
say "config edit: autoscaling.enabled true, minReplicas $MIN_REPLICAS, maxReplicas $((REPLICAS + 3))"
pulumi config set --path autoscaling.enabled true
pulumi config set --path autoscaling.minReplicas "$MIN_REPLICAS"
pulumi config set --path autoscaling.maxReplicas "$((REPLICAS + 3))"

step "pulumi preview after enabling autoscaling" preview_json "$WORK/preview-hpa.json"
"$TSX" "$HERE/checks.ts" changes "$WORK/preview-hpa.json" \
  --require "kubernetes:autoscaling/v2:HorizontalPodAutoscaler@worker=create" \
  --require "kubernetes:apps/v1:Deployment@worker=update"
step "pulumi up --yes (autoscaling on)" pulumi up --yes "${ENGINE_FLAGS[@]}"

say "waiting for the HPA controller to scale the workers to $MIN_REPLICAS"
pulumi stack export >"$WORK/stack-after-hpa.json"
WORKER_DEPLOYMENT="$(node -e '
  const r = require(process.argv[1]).deployment.resources.find(
    (r) => r.type === "kubernetes:apps/v1:Deployment" && r.urn.includes("worker"));
  console.log(r.outputs.metadata.name);' "$WORK/stack-after-hpa.json")"
deployment_replicas() {
  api GET "/apis/apps/v1/namespaces/$NAMESPACE/deployments/$WORKER_DEPLOYMENT" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const d = JSON.parse(s);
      console.log(`${d.spec.replicas} ${d.status.readyReplicas ?? 0}`);
    });'
}
HPA_T0=$(date +%s)
for _ in $(seq 1 90); do
  alive kube-controller-manager
  [[ "$(deployment_replicas)" == "$MIN_REPLICAS $MIN_REPLICAS" ]] && break
  sleep 1
done
[[ "$(deployment_replicas)" == "$MIN_REPLICAS $MIN_REPLICAS" ]] ||
  fail "the HPA did not scale $WORKER_DEPLOYMENT to $MIN_REPLICAS ready replicas (now: $(deployment_replicas))"
echo "$WORKER_DEPLOYMENT: $MIN_REPLICAS replicas, all Ready, $(($(date +%s) - HPA_T0))s after the up"
expect_pods "worker=$MIN_REPLICAS" scheduler=1
# How the replica count moved: dropping `replicas` from the applied manifest releases Pulumi's
# server-side-apply ownership, and the field falls back to its default before the HPA sets it.
echo "scaling events of $WORKER_DEPLOYMENT:"
api GET "/api/v1/namespaces/$NAMESPACE/events?fieldSelector=involvedObject.name%3D$WORKER_DEPLOYMENT" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    for (const e of JSON.parse(s).items.filter((e) => e.reason === "ScalingReplicaSet"))
      console.log(`  ${e.lastTimestamp ?? e.eventTime}  ${e.message}`);
  });'
step "pulumi preview --expect-no-changes (the HPA owns replicas)" \
  pulumi preview --expect-no-changes --diff "${ENGINE_FLAGS[@]}"

# --- config edit: autoscaling mode dask (a KEDA ScaledObject replaces the CPU HPA) ------------
# No KEDA operator runs here. What is checked: with KEDA's own CRD installed (the file
# `npm run render` validates against, from the pinned KEDA release), the API server accepts the
# ScaledObject the program renders, the CPU HPA is gone, and the next preview is clean.
say "config edit: autoscaling.mode dask, minReplicas 0 (KEDA's ScaledObject CRD installed first)"
node -e 'const fs = require("fs"), y = require(process.argv[2]);
  fs.writeFileSync(process.argv[3], JSON.stringify(y.parse(fs.readFileSync(process.argv[1], "utf8"))));' \
  "$ROOT/infra/render/crds/keda.sh_scaledobjects.yaml" "$ROOT/node_modules/yaml" "$WORK/keda-crd.json"
api POST /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$(cat "$WORK/keda-crd.json")" >/dev/null
crd_established() {
  api GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledobjects.keda.sh | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const c = (JSON.parse(s).status?.conditions ?? []).find((c) => c.type === "Established");
      console.log(c?.status === "True" ? "yes" : "no");
    });'
}
for _ in $(seq 1 60); do [[ "$(crd_established)" == yes ]] && break; sleep 1; done
[[ "$(crd_established)" == yes ]] || fail "the ScaledObject CRD was not Established within 60 s"
pulumi config set --path autoscaling.mode dask
pulumi config set --path autoscaling.minReplicas 0
step "pulumi up --yes (mode dask)" pulumi up --yes "${ENGINE_FLAGS[@]}"
api GET "/apis/keda.sh/v1alpha1/namespaces/$NAMESPACE/scaledobjects" >"$WORK/scaledobjects.json"
api GET "/apis/autoscaling/v2/namespaces/$NAMESPACE/horizontalpodautoscalers" >"$WORK/hpas.json"
node -e '
  const [so, hpa] = process.argv.slice(1).map((f) => require(f).items);
  const names = so.map((o) => `${o.metadata.name} -> ${o.spec.scaleTargetRef.name} ${o.spec.minReplicaCount}..${o.spec.maxReplicaCount}`);
  console.log(`ScaledObjects: ${names.join(", ")}; HPAs: ${hpa.length}`);
  if (so.length !== 1 || so[0].spec.minReplicaCount !== 0 || hpa.length !== 0) process.exit(1);
' "$WORK/scaledobjects.json" "$WORK/hpas.json" ||
  fail "mode dask should leave exactly one ScaledObject (minReplicaCount 0) and no HPA"
step "pulumi preview --expect-no-changes (mode dask)" \
  pulumi preview --expect-no-changes --diff "${ENGINE_FLAGS[@]}"

step "pulumi destroy --yes" pulumi destroy --yes "${ENGINE_FLAGS[@]}"
pulumi stack export >"$WORK/stack-after-destroy.json"
REMAINING="$(node -e 'const d = require(process.argv[1]).deployment; console.log((d.resources ?? []).length)' "$WORK/stack-after-destroy.json")"
[[ "$REMAINING" == 0 ]] || fail "$REMAINING resources left in the stack after destroy"
# The results outlive the workspace (runner.resultsVolume.retainOnDelete, the default): destroy
# leaves the namespace with the results claim in it and no workload; deleting the namespace is
# the user's call, once the results are copied.
api GET "/api/v1/namespaces/$NAMESPACE/persistentvolumeclaims" >"$WORK/pvcs-after-destroy.json"
api GET "/apis/apps/v1/namespaces/$NAMESPACE/deployments" >"$WORK/deployments-after-destroy.json"
node -e '
  const [pvcs, deps] = process.argv.slice(1).map((f) => require(f).items.map((i) => i.metadata.name));
  if (JSON.stringify(pvcs) !== JSON.stringify(["dask-results"]) || deps.length > 0) {
    console.error(`after destroy: claims ${pvcs}, deployments ${deps}`);
    process.exit(1);
  }
' "$WORK/pvcs-after-destroy.json" "$WORK/deployments-after-destroy.json" ||
  fail "destroy should leave exactly the results claim"
echo "destroy kept the results claim dask-results in namespace $NAMESPACE; deleting the namespace"
api DELETE "/api/v1/namespaces/$NAMESPACE" >/dev/null
for _ in $(seq 1 120); do
  api GET "/api/v1/namespaces/$NAMESPACE" >/dev/null 2>&1 || break
  sleep 1
done
if api GET "/api/v1/namespaces/$NAMESPACE" >/dev/null 2>&1; then
  fail "namespace $NAMESPACE still exists 120 s after it was deleted"
fi
echo "stack empty; namespace $NAMESPACE gone from the cluster"

say "summary"
echo "language host: $E2E_LANGHOST"
echo "kubernetes provider: $E2E_PROVIDER"
echo "pulumi $PULUMI_VERSION_OUT, pulumi-language-nodejs $(pulumi-language-nodejs -version 2>/dev/null || echo '?')," \
  "kube-apiserver $KUBE_SERVER_VERSION, $("$BIN/etcd" --version | head -n 1), kwok $("$BIN/kwok" --version | cut -d' ' -f3)"
for t in "${STEP_TIMES[@]}"; do echo "  $t"; done
echo "e2e: passed"
