#!/usr/bin/env bash
# `npm run test:node`: our images and our manifests run by a real node. A real kubelet with
# containerd (runc, a CNI bridge), kube-proxy and CoreDNS joins a real kube-apiserver; the images
# come from images/*.Dockerfile (test/images/build.sh). Then `pulumi up` of a kubernetes-target
# stack with two jobs (the example study and a study with its own package), and from the API, the
# scheduler and the results volume:
#   the scheduler pod passes its readiness and liveness probes → every worker process registers
#   with the --memory-limit we rendered → both runner Jobs reach Succeeded with every group on the
#   results volume (a hostPath PersistentVolume) → scaling the workers 2 → 1 while a study runs
#   retires a worker (its preStop hook) and recomputes 0 tasks → a worker Deployment patched to
#   zero headroom (validation bypassed, as the reliability suite does) is OOM-killed by the kernel
#   (counted in the pod's memory cgroup), the kubelet reports the container OOMKilled and the
#   runner's pod watcher counts it (on this cgroup v1 machine the kernel's choice is steered to the
#   container's main process, as cgroup v2 kills the whole container; docs/e2e.md) → `pulumi destroy` leaves no pod and no
#   container running.
#
# Network: everything (control plane, node, pods) lives in one network namespace this script
# creates. It holds loopback, a bridge with the node address and the pods' CNI bridge, and no
# route out: no packet of this test can reach any other address.
#
# Skips (exit 0, "SKIPPED" and the reason) where the node cannot run here: not root, no
# `ip netns`, no cgroup memory controller, or tools/images that cannot be built (test/e2e/tools.sh
# --node, test/images/build.sh). NODE_REQUIRE=1 turns a skip into a failure.
#
# Environment: E2E_KEEP=1 keeps the work directory; DASK_WORKSPACE_CACHE (the tools cache).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
HERE="$ROOT/test/e2e"
# shellcheck source=test/e2e/lib.sh
. "$HERE/lib.sh"
CACHE="${DASK_WORKSPACE_CACHE:-$HOME/.cache/dask-workspace}"
BIN="$CACHE/bin"

say() { printf '\n== node: %s\n' "$*"; }
fail() {
  echo "node: FAILED: $*" >&2
  exit 1
}
skip() {
  if [[ "${NODE_REQUIRE:-0}" == 1 ]]; then fail "cannot run here: $*"; fi
  echo "node: SKIPPED: $*"
  exit 0
}

if [[ "${1:-}" != --inside ]]; then
  # --- outside: preconditions, tools, images, the network namespace ---------------------------
  START_TS=$(date +%s)
  [[ "$(id -u)" == 0 ]] || skip "needs root (a kubelet, containerd, network namespaces)"
  command -v ip >/dev/null || skip "no iproute2"
  grep -q memory /proc/cgroups || skip "no cgroup memory controller"
  for c in iptables runc conntrack ipset; do
    command -v "$c" >/dev/null && continue
    if command -v apt-get >/dev/null; then
      say "installing Debian packages: iptables runc conntrack ipset containernetworking-plugins"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables runc conntrack ipset containernetworking-plugins >/dev/null ||
        skip "apt-get could not install the node's Debian packages"
      break
    fi
    skip "$c is not installed and there is no apt-get"
  done
  [[ -x /usr/lib/cni/bridge ]] || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null || skip "no CNI plugins"
  }
  bash "$ROOT/scripts/ensure-node.sh"
  bash "$ROOT/scripts/ensure-venv.sh" >/dev/null
  say "tools (test/e2e/tools.sh --node)"
  T0=$(date +%s)
  set +e
  bash "$HERE/tools.sh" --node
  code=$?
  set -e
  ((code == 2)) && skip "no Go toolchain to build the node's tools"
  # A tool that cannot be built here (a registry refusing a module, say) skips the node test
  # rather than failing the run; the build's log tail is above.
  ((code == 0)) || skip "the node's tools could not be built (see above)"
  TOOLS_SECS=$(($(date +%s) - T0))
  say "images (test/images/build.sh, then archives for containerd)"
  T0=$(date +%s)
  set +e
  image_exports="$(bash "$HERE/node/images.sh")"
  code=$?
  set -e
  ((code == 3)) && skip "images cannot be built on this machine (see above)"
  ((code == 0)) || fail "the images could not be built (see above)"
  IMAGES_SECS=$(($(date +%s) - T0))
  eval "$image_exports"
  eval "$(bash "$HERE/tools.sh" --env)"
  export TOOLS_SECS IMAGES_SECS START_TS NODE_IMAGE_DASK NODE_IMAGE_RUNNER NODE_IMAGE_PAUSE NODE_ARCHIVES

  NS="dw-node-$$"
  ip netns add "$NS" || skip "cannot create a network namespace"
  cleanup_ns() {
    local pids
    pids="$(ip netns pids "$NS" 2>/dev/null || true)"
    [[ -n "$pids" ]] && kill -KILL $pids 2>/dev/null
    ip netns del "$NS" 2>/dev/null || true
  }
  trap cleanup_ns EXIT
  set +e
  # nsenter, not `ip netns exec`: only the network namespace changes (`ip netns exec` also remounts
  # /sys, which hides the cgroup hierarchies the kubelet needs).
  nsenter --net="/run/netns/$NS" bash "$0" --inside
  code=$?
  set -e
  echo "node: wall time $(($(date +%s) - START_TS))s (tools ${TOOLS_SECS}s, images ${IMAGES_SECS}s)"
  exit "$code"
fi

# --- inside the network namespace -------------------------------------------------------------
NODE_IP="10.201.0.1"
NODE_NAME="dw-node"
POD_CIDR="10.244.0.0/24"
SERVICE_CIDR="10.96.0.0/16"
SERVICE_IP="10.96.0.1"
API_PORT=6443
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dask-workspace-node.XXXXXX")"
N="$WORK/node"
PKI="$WORK/pki"
CTRD_ROOT="$CACHE/node/containerd"
mkdir -p "$WORK/logs" "$PKI" "$WORK/state" "$N/cni" "$WORK/results" "$CTRD_ROOT"
PIDS=()
NAMES=()
PY="$ROOT/.venv/bin/python"
export PATH="$BIN:$PATH"

ctr_() { ctr --address "$N/containerd.sock" --namespace k8s.io "$@"; }

teardown() {
  local code=$?
  set +e
  say "teardown"
  # Containers first (kubelet stopped so it restarts none), then the shims, then the rest.
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    [[ "${NAMES[$i]}" == kubelet ]] && kill -TERM "${PIDS[$i]}" 2>/dev/null && wait "${PIDS[$i]}" 2>/dev/null
  done
  if [[ -S "$N/containerd.sock" ]]; then
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1; done
    sleep 1
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$t" >/dev/null 2>&1; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$c" >/dev/null 2>&1; done
  fi
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $N/containerd.sock" 2>/dev/null
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null
    for _ in $(seq 1 50); do
      kill -0 "${PIDS[$i]}" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "${PIDS[$i]}" 2>/dev/null
    wait "${PIDS[$i]}" 2>/dev/null
  done
  # Mounts the kubelet and containerd made live in this mount namespace only; unmount them so the
  # work directory can go.
  grep -o " $WORK[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  # Pod cgroups the kubelet made.
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h/kubepods" ]] && find "$h/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  if [[ "$code" != 0 ]]; then
    for f in "$WORK"/logs/*.log; do
      [[ -f "$f" ]] || continue
      echo "---- last lines of $f" >&2
      tail -n 12 "$f" >&2
    done
  fi
  if [[ "${E2E_KEEP:-0}" == 1 || "$code" != 0 ]]; then
    echo "node: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$code"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- network ----------------------------------------------------------------------------------
say "network namespace: loopback, node address $NODE_IP, no route out"
ip link set lo up
ip link add dw-node0 type bridge
ip addr add "$NODE_IP/24" dev dw-node0
ip link set dw-node0 up
# Service addresses must be routable for the node's own connections (kube-proxy rewrites them
# after the route lookup); this is the only route besides the directly connected ones.
ip route add "$SERVICE_CIDR" dev dw-node0
sysctl -qw net.ipv4.ip_forward=1
# Pod-to-Service traffic answered by a pod on the same bridge must pass the NAT rules.
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
ip route

# --- certificates and kubeconfig --------------------------------------------------------------
say "certificates and kubeconfig"
(
  cd "$PKI"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.crt -subj "/CN=dask-workspace-node-ca"
  cert() { # NAME SUBJECT EXT
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
    printf '%s\n' "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt"
  }
  cert apiserver "/CN=kube-apiserver" "subjectAltName=IP:$NODE_IP,IP:127.0.0.1,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth"
  cert kubelet "/CN=$NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth"
  cert admin "/O=system:masters/CN=node-admin" "extendedKeyUsage=clientAuth"
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
) >"$WORK/logs/pki.log" 2>&1 || fail "openssl; see $WORK/logs/pki.log"
export KUBECONFIG="$WORK/kubeconfig"
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: node
    cluster: { server: "https://$NODE_IP:$API_PORT", certificate-authority: $PKI/ca.crt }
users:
  - name: admin
    user: { client-certificate: $PKI/admin.crt, client-key: $PKI/admin.key }
contexts:
  - name: node
    context: { cluster: node, user: admin }
current-context: node
EOF
api() {
  curl -sS --fail-with-body --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    -X "$1" -H "Content-Type: ${4:-application/json}" ${3:+--data "$3"} "https://$NODE_IP:$API_PORT$2"
}
# json EXPR < doc: evaluates a JavaScript expression over the parsed document `d`.
json() { node -e 'let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => { const d = JSON.parse(s); const r = eval(process.argv[1]); console.log(typeof r === "string" ? r : JSON.stringify(r)); });' "$1"; }

# --- control plane ----------------------------------------------------------------------------
say "control plane (etcd on 127.0.0.1, kube-apiserver on $NODE_IP:$API_PORT)"
CP_T0=$(date +%s)
start etcd etcd --name node --data-dir "$WORK/etcd" --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster node=http://127.0.0.1:2380 \
  --unsafe-no-fsync --log-level warn
start kube-apiserver kube-apiserver --etcd-servers http://127.0.0.1:2379 \
  --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --kubelet-preferred-address-types InternalIP \
  --kubelet-client-certificate "$PKI/admin.crt" \
  --kubelet-client-key "$PKI/admin.key" --kubelet-certificate-authority "$PKI/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-cluster-ip-range "$SERVICE_CIDR" --authorization-mode Node,RBAC \
  --cert-dir "$WORK/apiserver" --profiling=false
for _ in $(seq 1 240); do
  alive etcd
  alive kube-apiserver
  [[ "$(api GET /readyz 2>/dev/null)" == ok ]] && break
  sleep 0.5
done
[[ "$(api GET /readyz 2>/dev/null)" == ok ]] || fail "kube-apiserver not ready after 120s"
start kube-controller-manager kube-controller-manager --kubeconfig "$KUBECONFIG" \
  --authentication-kubeconfig "$KUBECONFIG" --authorization-kubeconfig "$KUBECONFIG" \
  --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=true --service-cluster-ip-range "$SERVICE_CIDR"
start kube-scheduler kube-scheduler --kubeconfig "$KUBECONFIG" --authentication-kubeconfig "$KUBECONFIG" \
  --authorization-kubeconfig "$KUBECONFIG" --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false
echo "control plane up in $(($(date +%s) - CP_T0))s"

# --- containerd and the images ------------------------------------------------------------------
say "containerd $(containerd --version | cut -d' ' -f3) with runc $(runc --version | head -n 1 | cut -d' ' -f3)"
cat >"$N/cni/10-dw-node.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "dw-node", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}}
]}
EOF
cat >"$N/containerd.toml" <<EOF
version = 3
root = "$CTRD_ROOT"
state = "$N/containerd-state"
[grpc]
  address = "$N/containerd.sock"
[ttrpc]
  address = "$N/containerd.sock.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$NODE_IMAGE_PAUSE"
[plugins.'io.containerd.cri.v1.runtime']
  # The containers' oom_score_adj is never set below the node's own (a sandbox may refuse it).
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$N/cni"
EOF
start containerd containerd --config "$N/containerd.toml"
for _ in $(seq 1 60); do
  alive containerd
  ctr_ version >/dev/null 2>&1 && break
  sleep 0.5
done
IMG_T0=$(date +%s)
# containerd's image store is kept in the cache between runs: an archive (named by its image ID) is
# imported once, unless its image is gone from the store.
for tar in $NODE_ARCHIVES; do
  mark="$CTRD_ROOT/imported-$(basename "$tar")"
  if [[ -f "$mark" ]] && ctr_ images ls -q | grep -qxF "$(cat "$mark")"; then continue; fi
  ctr_ images import --snapshotter overlayfs "$tar" >>"$WORK/logs/images.log" 2>&1 || fail "ctr images import $tar; see $WORK/logs/images.log"
  tar -xOf "$tar" manifest.json | node -e 'let s="";process.stdin.on("data",(c)=>(s+=c)).on("end",()=>console.log(JSON.parse(s)[0].RepoTags[0]))' >"$mark"
done
ctr_ images ls -q | grep -v '^sha256:'
echo "images loaded into containerd in $(($(date +%s) - IMG_T0))s"

# --- kubelet, kube-proxy, CoreDNS -----------------------------------------------------------------
say "kubelet, kube-proxy, CoreDNS"
: >"$N/resolv.conf" # pods resolve through CoreDNS only; nothing outside the cluster resolves
cat >"$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: false }
  x509: { clientCAFile: "$PKI/ca.crt" }
authorization: { mode: AlwaysAllow }
address: "$NODE_IP"
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
tlsCertFile: "$PKI/kubelet.crt"
tlsPrivateKeyFile: "$PKI/kubelet.key"
containerRuntimeEndpoint: "unix://$N/containerd.sock"
cgroupDriver: cgroupfs
# This machine has cgroup v1: a 1.36 kubelet refuses it unless told otherwise (cgroup v1 is
# deprecated, still supported).
failCgroupV1: false
failSwapOn: false
clusterDNS: ["$NODE_IP"]
clusterDomain: cluster.local
resolvConf: "$N/resolv.conf"
podCIDR: "$POD_CIDR"
podLogsDir: "$N/pod-logs"
serializeImagePulls: false
# The disk is shared with the rest of the machine: evict only when it is really full, and never
# garbage-collect the images this test loaded.
evictionHard: { memory.available: "200Mi", nodefs.available: "2%", imagefs.available: "2%" }
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
start kubelet kubelet --config "$N/kubelet.yaml" --kubeconfig "$KUBECONFIG" \
  --root-dir "$N/kubelet" --cert-dir "$N/kubelet-pki" --hostname-override "$NODE_NAME" \
  --node-ip "$NODE_IP" --v=1
cat >"$N/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: "$KUBECONFIG" }
hostnameOverride: "$NODE_NAME"
mode: iptables
clusterCIDR: "10.244.0.0/16"
healthzBindAddress: "127.0.0.1:10256"
metricsBindAddress: "127.0.0.1:10249"
# Leave the machine's conntrack sysctls alone (0: do not set them).
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
start kube-proxy kube-proxy --config "$N/kube-proxy.yaml"
cat >"$N/Corefile" <<EOF
.:53 {
  bind $NODE_IP
  errors
  health 127.0.0.1:8080
  ready 127.0.0.1:8181
  kubernetes cluster.local in-addr.arpa ip6.arpa {
    kubeconfig $KUBECONFIG
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
  }
  cache 30
}
EOF
start coredns coredns -conf "$N/Corefile"
NODE_T0=$(date +%s)
node_ready() {
  api GET "/api/v1/nodes/$NODE_NAME" 2>/dev/null |
    json '(d.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True") ? "yes" : "no"' 2>/dev/null
}
for _ in $(seq 1 120); do
  alive kubelet
  alive kube-proxy
  alive coredns
  [[ "$(node_ready)" == yes ]] && break
  sleep 1
done
[[ "$(node_ready)" == yes ]] || fail "node $NODE_NAME not Ready after 120 s"
api GET "/api/v1/nodes/$NODE_NAME" | json '`node ${d.metadata.name} Ready: kubelet ${d.status.nodeInfo.kubeletVersion}, ${d.status.nodeInfo.containerRuntimeVersion}, kernel ${d.status.nodeInfo.kernelVersion}, ${d.status.capacity.cpu} CPU, ${d.status.capacity.memory} memory`'
echo "node Ready $(($(date +%s) - NODE_T0))s after the kubelet started"

# NetworkPolicy enforcement: kube-router's firewall controller only (the bridge CNI carries the
# traffic, kube-proxy the Services). It reads the Node object, so it starts once the node exists.
# A short sync period: it also resyncs on every pod and policy event.
# NODE_NETWORK_POLICY=off leaves it out, to see the policies unenforced (the policy check fails).
if [[ "${NODE_NETWORK_POLICY:-on}" == off ]]; then
  say "kube-router NOT started (NODE_NETWORK_POLICY=off): NetworkPolicies are not enforced"
else
  say "kube-router (NetworkPolicy engine)"
  start kube-router kube-router --kubeconfig "$KUBECONFIG" --hostname-override "$NODE_NAME" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-pod-egress=false --service-cluster-ip-range "$SERVICE_CIDR" --health-port 0 \
    --iptables-sync-period 30s --v=1
  for _ in $(seq 1 60); do
    alive kube-router
    iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1 && break
    sleep 1
  done
  iptables -S KUBE-ROUTER-FORWARD >/dev/null 2>&1 || fail "kube-router installed no firewall chains in 60 s"
  echo "kube-router: firewall chains installed"
fi

# --- the stack ----------------------------------------------------------------------------------
say "pulumi project copy, stack 'node' (the local stack on this node)"
PROJECT="$WORK/project"
project_copy "$ROOT" "$PROJECT"
cp "$ROOT/Pulumi.local.yaml" "$PROJECT/Pulumi.node.yaml"
export PULUMI_BACKEND_URL="file://$WORK/state" PULUMI_CONFIG_PASSPHRASE=test PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
ENGINE_FLAGS=(--non-interactive --skip-plugin-pre-install --color never)
cd "$PROJECT"
pulumi stack init node --non-interactive >/dev/null
NAMESPACE="$(pulumi config get namespace)"
# Our images from the containerd store, never pulled; CPU requests that fit one 2-core node.
pulumi config set --path images.dask "$NODE_IMAGE_DASK"
pulumi config set --path images.runner "$NODE_IMAGE_RUNNER"
pulumi config set --path images.pullPolicy Never
pulumi config set --path scheduler.cpu 200m
pulumi config set --path workers.cpu 300m
pulumi config set --path runner.cpu 200m
pulumi config set --path 'jobs.own-model.study' examples/studies/own-model/study.yaml
# Egress is restricted (the default) and enforced here. The cluster DNS is a process on the node,
# not kube-dns pods, so the pods' DNS needs an extra rule, as on a cluster with node-local DNS; the
# runner's API-server rule is narrowed to the one address it needs (docs/security.md, "Egress").
pulumi config set --path 'network.extraEgress[0].cidr' "$NODE_IP/32"
pulumi config set --path 'network.extraEgress[0].ports[0]' 53
pulumi config set --path 'network.extraEgress[0].protocol' UDP
pulumi config set --path 'network.extraEgress[1].cidr' "$NODE_IP/32"
pulumi config set --path 'network.extraEgress[1].ports[0]' 53
pulumi config set --path 'network.apiServer.cidrs[0]' "$NODE_IP/32"
pulumi config set --path 'network.apiServer.ports[0]' "$API_PORT"
REPLICAS="$(pulumi config get --path workers.replicas)"
NPROCS="$(pulumi config get --path workers.nprocs)"

# The durable results location: the stack's claim binds to this hostPath volume (no StorageClass
# runs here); the test reads every job's results from it directly.
chmod 0777 "$WORK/results"
api POST /api/v1/persistentvolumes "$(
  cat <<EOF
{"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "node-results"},
 "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
  "hostPath": {"path": "$WORK/results", "type": "Directory"}}}
EOF
)" >/dev/null

STEP_TIMES=()
step() {
  local label="$1" t0
  shift
  say "$label"
  t0=$(date +%s)
  "$@"
  STEP_TIMES+=("$label: $(($(date +%s) - t0))s")
}
step "pulumi up --yes (scheduler, $REPLICAS workers, jobs sir-grid and own-model)" \
  pulumi up --yes "${ENGINE_FLAGS[@]}"

CTRD_SOCK="$N/containerd.sock"
export NODE_IP NODE_NAME NAMESPACE REPLICAS NPROCS WORK PKI API_PORT CTRD_SOCK
checks() { "$PY" "$HERE/node/node_checks.py" "$@"; }
step "workers registered, jobs Succeeded, results on the volume" checks after-up
step "scale the workers 2 -> 1 while a study holds results: preStop retire, 0 recomputed" checks scale-down
step "NetworkPolicy enforced (kube-router): who reaches the scheduler, who does not" checks network-policy
step "zero headroom (validation bypassed): a kernel OOM kill in a real pod" checks oom
step "scheduler pod Ready, its readiness and liveness probes passing all along, 0 restarts" checks scheduler-probes

step "pulumi destroy --yes" pulumi destroy --yes "${ENGINE_FLAGS[@]}"
step "nothing left running" checks after-destroy
no_containers() {
  local i
  for i in $(seq 1 90); do
    if [[ -z "$(ctr_ tasks ls -q)" ]]; then
      echo "containerd: 0 containers running"
      return 0
    fi
    sleep 1
  done
  ctr_ tasks ls
  fail "containers still running 90 s after the destroy"
}
step "no container left in containerd" no_containers

say "summary"
for t in "${STEP_TIMES[@]}"; do echo "  $t"; done
echo "node: passed"
