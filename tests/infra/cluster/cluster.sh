#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, built from source modules, with pods on the
# local Docker engine through cri-dockerd (the layout of k3s --docker). See README.md beside
# this file for what runs, the versions and the reason of every flag.
#
#   cluster.sh build    build the binaries into the cache (nothing if already there)
#   cluster.sh start    build if needed, start everything in the background, wait until the node
#                       is Ready and the default ServiceAccount exists, print the kubeconfig path
#                       (a cluster that is already up and healthy is left as it is)
#   cluster.sh status   say what runs; exit 0 only when the cluster is up and the node Ready
#   cluster.sh stop     stop everything, remove the pods' containers, undo the host changes
#   cluster.sh kubeconfig   print the admin kubeconfig path
#
# Environment:
#   EDGECAST_CLUSTER_DIR   state: pki, datastore, configs, logs (default /var/lib/edgecast-cluster)
#   EDGECAST_CLUSTER_DATASTORE   kine (default: SQLite, as a single k3s server) or etcd
#   EDGECAST_CACHE         cache root shared with tests/infra/base-image.sh (default ~/.cache/edgecast):
#                          binaries in cluster/<version>-<sources hash>/bin (each part built in
#                          cluster/parts/<part>-<its sources hash>), Go caches in go/
#   EDGECAST_CLUSTER_START_TIMEOUT   seconds start waits for the node (default 240)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"

state=${EDGECAST_CLUSTER_DIR:-/var/lib/edgecast-cluster}
cache_root=${EDGECAST_CACHE:-$HOME/.cache/edgecast}
start_timeout=${EDGECAST_CLUSTER_START_TIMEOUT:-240}

# Network layout, as k3s's defaults: pods 10.42.0.0/16 (this node 10.42.0.0/24), Services
# 10.43.0.0/16. Ports of the host-side listeners; the datastore is off etcd's usual ports so that
# it cannot collide with another etcd on the machine.
cluster_cidr=10.42.0.0/16
node_pod_cidr=10.42.0.0/24
bridge_ip=10.42.0.1
service_cidr=10.43.0.0/16
service_ip=10.43.0.1
bridge=edgecast0
cni_network=edgecast-pods
api_port=6443
datastore_client=127.0.0.1:12379
etcd_peer=127.0.0.1:12380
node_name=edgecast-node
# The API server's datastore: kine over SQLite, as a single k3s server keeps its state by default,
# or etcd, as k3s with --cluster-init does. Either listens for the API server on datastore_client.
datastore=${EDGECAST_CLUSTER_DATASTORE:-kine}
case $datastore in
  kine | etcd) ;;
  *) printf 'cluster: error: EDGECAST_CLUSTER_DATASTORE is %s, not kine or etcd\n' "$datastore" >&2; exit 2 ;;
esac
# Startup order; stop goes the other way.
components=("$datastore" docker-proxy cri-dockerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  printf 'cluster: error: %s\n' "$*" >&2
  exit 1
}

# ---------------------------------------------------------------------------------------- build

# Each part is built and cached on its own sources, so that a change to one rebuilds that one:
# kube (the Kubernetes components, etcd, the pause binary and the harness's helpers),
# cri-dockerd and kine. bin/ joins them (hard links) under a key of all three.
part_hash() {
  (
    cd "$here"
    case $1 in
      kube) echo "$K8S_VERSION $K8S_STAGING_VERSION $ETCD_VERSION" && cat kube/go.mod kube/go.sum kube/*.go kube/pause/*.go ;;
      cri-dockerd) echo "$CRI_DOCKERD_VERSION" && cat cri-dockerd/go.mod cri-dockerd/go.sum ;;
      kine) echo "$KINE_VERSION" && cat kine/go.mod kine/go.sum ;;
    esac
    uname -m
  ) | sha256sum | cut -c1-12
}
parts=(kube cri-dockerd kine)
part_dir() { echo "$cache_root/cluster/parts/$1-$(part_hash "$1")"; }

sources_hash() {
  local part
  for part in "${parts[@]}"; do part_hash "$part"; done | sha256sum | cut -c1-12
}

bin_dir() { echo "$cache_root/cluster/$K8S_VERSION-$(sources_hash)/bin"; }

go_env() {
  export GOMODCACHE="$cache_root/go/mod" GOCACHE="$cache_root/go/build"
  export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
}

# The go.mod files must pin what versions.env says (a bump in one place only is refused).
check_versions() {
  local problems=()
  mod_version() { awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$here/$1"; }
  replace_version() { awk -v m="$2" '$1 == m && $2 == "=>" {print $4; exit}' "$here/$1"; }
  [ "$(mod_version kube/go.mod k8s.io/kubernetes)" = "$K8S_VERSION" ] ||
    problems+=("kube/go.mod: k8s.io/kubernetes is not $K8S_VERSION")
  [ "$(replace_version kube/go.mod k8s.io/api)" = "$K8S_STAGING_VERSION" ] ||
    problems+=("kube/go.mod: k8s.io/api is not replaced by $K8S_STAGING_VERSION")
  local other
  other=$(awk -v v="$K8S_STAGING_VERSION" '$1 ~ /^k8s.io\// && $2 == "=>" && $4 != v {print $1}' "$here/kube/go.mod")
  [ -z "$other" ] || problems+=("kube/go.mod: staging modules not at $K8S_STAGING_VERSION: $other")
  [ "$(mod_version kube/go.mod go.etcd.io/etcd/server/v3)" = "$ETCD_VERSION" ] ||
    problems+=("kube/go.mod: go.etcd.io/etcd/server/v3 is not $ETCD_VERSION")
  # The fork keeps upstream's module path: the version is the replace directive's.
  [ "$(awk '$1 == "replace" && $2 == "github.com/Mirantis/cri-dockerd" {print $5; exit}' "$here/cri-dockerd/go.mod")" = "$CRI_DOCKERD_VERSION" ] ||
    problems+=("cri-dockerd/go.mod: github.com/Mirantis/cri-dockerd is not replaced by github.com/k3s-io/cri-dockerd $CRI_DOCKERD_VERSION")
  [ "$(mod_version kine/go.mod github.com/k3s-io/kine)" = "$KINE_VERSION" ] ||
    problems+=("kine/go.mod: github.com/k3s-io/kine is not $KINE_VERSION")
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'cluster: error: %s\n' "${problems[@]}" >&2
    die "versions.env and the go.mod files disagree (see versions.env)"
  fi
}

build_part() {
  local part=$1 dir tmp t0=$SECONDS
  dir=$(part_dir "$part")
  [ -f "$dir/.complete" ] && return 0
  tmp=$dir.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  case $part in
    kube)
      local minor=${K8S_VERSION#v1.}
      minor=${minor%%.*}
      # Version stamps, as the upstream release build sets them (the API server derives its
      # compatibility version from them; without them it reports v0.0.0-master).
      local kver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
      kver+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
      kver+=" -X k8s.io/component-base/version.gitTreeState=clean"
      kver+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
      kver+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
      log "building Kubernetes $K8S_VERSION (apiserver, controller-manager, scheduler, kubelet, kube-proxy, etcd $ETCD_VERSION)"
      log "(a build from an empty cache takes tens of minutes on 2 cores; later starts reuse it)"
      (cd "$here/kube" && go build -ldflags "-s -w $kver" -o "$tmp/kube" .) || die "build of kube failed"
      log "building pause"
      (cd "$here/kube" && go build -ldflags "-s -w" -o "$tmp/pause" ./pause) || die "build of pause failed"
      ;;
    cri-dockerd)
      log "building cri-dockerd $CRI_DOCKERD_VERSION (k3s's fork)"
      (cd "$here/cri-dockerd" && go build \
        -ldflags "-s -w -X github.com/Mirantis/cri-dockerd/cmd/version.Version=${CRI_DOCKERD_VERSION#v}" \
        -o "$tmp/cri-dockerd" github.com/Mirantis/cri-dockerd) || die "build of cri-dockerd failed"
      ;;
    kine)
      # With cgo, as k3s builds it: kine's SQLite driver is then mattn/go-sqlite3 (SQLite's C
      # code). Without cgo kine falls back to the pure-Go modernc.org/sqlite, with which this
      # API server never became ready (its APIService registration stalls).
      if ! command -v gcc >/dev/null && [ "$(id -u)" = 0 ]; then
        log "installing gcc (kine's SQLite driver is C)"
        flock /var/lock/edgecast-apt.lock sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null'
      fi
      command -v gcc >/dev/null || die "kine needs a C compiler for its SQLite driver (apt-get install gcc libc6-dev)"
      log "building kine $KINE_VERSION"
      (cd "$here/kine" && CGO_ENABLED=1 go build -ldflags "-s -w" -o "$tmp/kine" github.com/k3s-io/kine) ||
        die "build of kine failed"
      ;;
  esac
  echo "$part built in $((SECONDS - t0)) s on $(nproc) cores, $(date -u +%FT%TZ)" >"$tmp/.complete"
  rm -rf "$dir"
  mv "$tmp" "$dir"
}

build() {
  local bin
  bin=$(bin_dir)
  [ -f "$bin/.complete" ] && return 0
  if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then
    export PATH="$PATH:/usr/local/go/bin"
  fi
  command -v go >/dev/null || die "Go is needed to build the cluster (go not found on PATH nor in /usr/local/go/bin)"
  mkdir -p "$cache_root/cluster/parts"
  # One build at a time, whoever asks (two test runs, a person and CI): the others wait here
  # and then find the finished build.
  exec 9>"$cache_root/cluster/.build.lock"
  if ! flock -n 9; then
    log "another build of the cluster is running; waiting for it"
    flock 9
  fi
  if [ -f "$bin/.complete" ]; then
    exec 9>&-
    return 0
  fi
  check_versions
  go_env
  local t0=$SECONDS part tmp=$bin.tmp name
  for part in "${parts[@]}"; do build_part "$part"; done
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for part in "${parts[@]}"; do
    for name in "$(part_dir "$part")"/*; do
      # Hard links (the same file, no copy) where the cache is one filesystem.
      ln "$name" "$tmp/" 2>/dev/null || cp "$name" "$tmp/"
    done
  done
  for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd; do
    ln -sf kube "$tmp/$name"
  done
  echo "$K8S_VERSION with cri-dockerd $CRI_DOCKERD_VERSION and kine $KINE_VERSION, $(date -u +%FT%TZ)" >"$tmp/.complete"
  rm -rf "$bin"
  mv "$tmp" "$bin"
  log "ready in $((SECONDS - t0)) s: $bin"
  exec 9>&-
}

# ------------------------------------------------------------------------------------ host prep

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (kubelet, CNI and kube-proxy change the host's network and cgroups)"; }

ensure_host_packages() {
  local missing=() pkg
  for pkg in $DEBIAN_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The host's apt, shared with tests/infra/base-image.sh (which may run at the same time).
    flock /var/lock/edgecast-apt.lock sh -c 'apt-get update -qq && apt-get install -y -qq "$@" >/dev/null' \
      apt "${missing[@]}"
  fi
  local plugin
  for plugin in bridge host-local portmap firewall loopback; do
    [ -x "/usr/lib/cni/$plugin" ] || die "CNI plugin /usr/lib/cni/$plugin missing (package containernetworking-plugins)"
  done
}

ensure_docker() {
  bash "$here/../docker-engine.sh" || die "no Docker engine (tests/infra/docker-engine.sh failed)"
}

# The pause image: a static pause binary alone in an image, imported under the tag that
# cri-dockerd is told to use (nothing is pulled).
ensure_pause_image() {
  local bin=$1
  docker image inspect "$PAUSE_IMAGE" >/dev/null 2>&1 && return 0
  log "importing the pause image $PAUSE_IMAGE"
  local dir
  dir=$(mktemp -d)
  cp "$bin/pause" "$dir/pause"
  tar -C "$dir" -c pause | docker import \
    --change 'ENTRYPOINT ["/pause"]' \
    --change 'LABEL org.edgecast.cluster=pause' - "$PAUSE_IMAGE" >/dev/null
  rm -rf "$dir"
}

node_ip() {
  # The address of the interface that holds the default route (no packet is sent).
  local ip
  ip=$(ip -4 -o route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global | awk '{sub(/\/.*/, "", $4); print $4; exit}')
  [ -n "$ip" ] || die "no IPv4 address for the node (the API server needs a non-loopback address)"
  echo "$ip"
}

# The kubelet sets these kernel parameters on every node (protectKernelDefaults: false); start
# records their values first and stop puts them back.
tuned_sysctls=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

save_sysctls() {
  local file=$state/run/sysctl.saved key
  [ -f "$file" ] && return 0
  for key in "${tuned_sysctls[@]}"; do
    [ -r "/proc/sys/$key" ] && echo "$key $(cat "/proc/sys/$key")"
  done >"$file.tmp"
  mv "$file.tmp" "$file"
}

restore_sysctls() {
  local file=$state/run/sysctl.saved key value
  [ -f "$file" ] || return 0
  while read -r key value; do
    echo "$value" >"/proc/sys/$key" 2>/dev/null || log "could not restore $key to $value"
  done <"$file"
  rm -f "$file"
}

# The pod bridge, made before the first pod so that the Service range can be routed to it: a
# packet to a ClusterIP that kube-proxy has no rule for stays on this machine instead of going
# out through the default route.
ensure_bridge() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$bridge_ip/24" dev "$bridge"
  ip link set "$bridge" up
  ip route replace "$service_cidr" dev "$bridge" src "$bridge_ip"
}

# ------------------------------------------------------------------------------------- configs

write_configs() {
  local ip=$1 cgroup_driver nofile
  cgroup_driver=$(docker info --format '{{.CgroupDriver}}')
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  mkdir -p "$state/cni/net.d" "$state/config"
  # Debian's CNI plugins: bridge (pods on one Linux bridge, the node's pod range from
  # host-local), portmap (hostPort), firewall (accepts the pods' traffic in the FORWARD chain,
  # whose policy Docker sets to DROP) and loopback (cri-dockerd adds lo itself). No masquerade:
  # pods talk to each other, to Services and to this host, not to the outside.
  cat >"$state/cni/net.d/10-edgecast.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$cni_network",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$node_pod_cidr", "gateway": "$bridge_ip"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$state/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
EOF
  cat >"$state/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $state/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $state/pki/kubelet.crt
tlsPrivateKeyFile: $state/pki/kubelet.key
# Docker's own cgroup driver ($cgroup_driver here); the two must agree.
cgroupDriver: $cgroup_driver
# This kubelet (1.34) still runs on cgroup v1 and hybrid hosts; 1.35 refuses them by default.
failCgroupV1: false
# Lowering the kubelet's own OOM score needs CAP_SYS_RESOURCE, which some hosts do not grant.
oomScoreAdj: 0
# Raising RLIMIT_NOFILE past the hard limit needs CAP_SYS_RESOURCE too: ask for what there is.
maxOpenFiles: $nofile
# Development machines and CI runners may have swap.
failSwapOn: false
# The kubelet sets vm.overcommit_memory, kernel.panic and kernel.panic_on_oops as on every node
# (true would make it refuse to start where they differ); cluster.sh stop restores them.
protectKernelDefaults: false
# The Docker engine is shared with other work on the machine: the kubelet must never delete
# images it did not pull, nor evict pods because of a disk or memory level it does not own.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "0%"
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
podLogsDir: $state/pod-logs
# No cluster DNS (no CoreDNS image can be pulled): pods get the host's resolv.conf.
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
# Faster status reports than the defaults, for a short-lived test cluster.
nodeStatusUpdateFrequency: 4s
nodeStatusReportFrequency: 20s
serializeImagePulls: false
EOF
  cat >"$state/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $state/pki/kube-proxy.kubeconfig
hostnameOverride: $node_name
mode: iptables
clusterCIDR: $cluster_cidr
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Lowering its own OOM score needs CAP_SYS_RESOURCE.
oomScoreAdj: 0
conntrack:
  # 0: leave the host's nf_conntrack_max and TCP timeouts as they are (kube-proxy would
  # otherwise raise the table size and change two sysctls of a shared machine).
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
iptables:
  # NodePorts on 127.0.0.1 would need net.ipv4.conf.all.route_localnet=1 on the host.
  localhostNodePorts: false
  syncPeriod: 10s
  minSyncPeriod: 0s
# NodePorts on the node's own address only (not on every local address such as docker0).
nodePortAddresses: ["primary"]
EOF
}

# ---------------------------------------------------------------------------------- processes

pidfile() { echo "$state/run/$1.pid"; }

# The pid of a component if it runs: the pid file's process, and its argv[0] names it.
component_pid() {
  local file pid argv
  file=$(pidfile "$1")
  [ -f "$file" ] || return 1
  pid=$(cat "$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # argv[0] is the component's name (a symlink to kube), or kube with the name as argv[1].
  argv=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  case " $argv" in
    */"$1 "* | */"kube $1 "*) echo "$pid" ;;
    *) return 1 ;;
  esac
}

launch() {
  local name=$1
  shift
  log "starting $name"
  # Detached by setsid (not killed with the caller's process group), no inherited lock
  # descriptors, output to its log.
  setsid "$@" >>"$state/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
  local pid=$! i
  echo "$pid" >"$(pidfile "$name")"
  # Until the forked shell has exec'd the component, its argv is this script's, and a check
  # in between would take a live component for a dead one (seen on a loaded machine).
  for i in $(seq 1 100); do
    component_pid "$name" >/dev/null && return 0
    [ -d "/proc/$pid" ] || return 0
    sleep 0.05
  done
}

# stop_components NAME...: SIGTERM to all of them at once, SIGKILL to those still there after
# 10 s.
stop_components() {
  local name pid pids=() i
  for name in "$@"; do
    if pid=$(component_pid "$name"); then
      log "stopping $name ($pid)"
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$(pidfile "$name")"
  done
  for i in $(seq 1 100); do
    for pid in "${pids[@]}"; do
      [ -d "/proc/$pid" ] && break
      pid=
    done
    [ -z "${pid:-}" ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  sleep 0.5
}

wait_for() {
  # wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND until it succeeds; a component that
  # died meanwhile ends the wait at once.
  local limit=$1 what=$2 deadline=$((SECONDS + $1)) name
  shift 2
  until "$@" >/dev/null 2>&1; do
    for name in "${components[@]}"; do
      if [ -f "$(pidfile "$name")" ] && ! component_pid "$name" >/dev/null; then
        show_logs "$name"
        die "$name exited while waiting for $what (log: $state/logs/$name.log)"
      fi
    done
    if [ $SECONDS -ge $deadline ]; then
      show_logs "${components[@]}"
      die "timed out after ${limit}s waiting for $what (logs: $state/logs)"
    fi
    sleep 0.5
  done
}

show_logs() {
  local name
  for name in "$@"; do
    [ -f "$state/logs/$name.log" ] || continue
    printf '\n----- %s (last lines of %s) -----\n' "$name" "$state/logs/$name.log" >&2
    tail -n 15 "$state/logs/$name.log" >&2
  done
}

api() {
  # api PATH: GET from the API server as the admin user.
  curl -sf --max-time 5 --cacert "$state/pki/ca.crt" --cert "$state/pki/admin.crt" --key "$state/pki/admin.key" \
    "https://127.0.0.1:$api_port$1"
}

node_ready() {
  api "/api/v1/nodes/$node_name" | python3 -c '
import json, sys
node = json.load(sys.stdin)
ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
sys.exit(0 if ready and ready[0]["status"] == "True" else 1)'
}

default_service_account() { api /api/v1/namespaces/default/serviceaccounts/default; }

healthy() {
  local name
  for name in "${components[@]}"; do
    component_pid "$name" >/dev/null || return 1
  done
  curl -sf --max-time 5 --cacert "$state/pki/ca.crt" "https://127.0.0.1:$api_port/readyz" >/dev/null || return 1
  node_ready
}

# ------------------------------------------------------------------------------------ commands

start() {
  need_root
  ensure_host_packages
  ensure_docker
  build
  local bin ip name
  bin=$(bin_dir)
  mkdir -p "$state/run" "$state/logs"
  exec 8>"$state/run/.lock"
  flock 8
  if healthy; then
    log "already running"
    echo "$state/pki/admin.kubeconfig"
    return 0
  fi
  stop_locked
  local t0=$SECONDS
  ip=$(node_ip)
  ensure_pause_image "$bin"
  "$bin/kube" pki --dir "$state/pki" --node-name "$node_name" --node-ip "$ip" \
    --service-ip "$service_ip" --server "https://127.0.0.1:$api_port"
  write_configs "$ip"
  echo "$bin" >"$state/run/bin-dir"
  save_sysctls
  ensure_bridge
  # A fresh cluster at every start: no object of an earlier run comes back.
  rm -rf "$state/etcd" "$state/kine" "$state/kubelet" "$state/cri-dockerd" "$state/cni/ipam" "$state/cni/cache" "$state/pod-logs"
  mkdir -p "$state/kubelet" "$state/pod-logs" "$state/cri-dockerd" "$state/kine"
  for name in "${components[@]}"; do : >"$state/logs/$name.log"; done

  if [ "$datastore" = kine ]; then
    # kine on one SQLite file, in WAL mode as k3s opens it; plain gRPC on loopback, no metrics
    # listener (its default :8080 would take a port of the shared machine).
    launch kine "$bin/kine" \
      --endpoint "sqlite://$state/kine/state.db?_journal=WAL&cache=shared" \
      --listen-address "$datastore_client" --metrics-bind-address 0
    # kine answers gRPC only: its port accepting connections is the sign it serves.
    wait_for 60 "kine" bash -c "exec 3<>/dev/tcp/${datastore_client%:*}/${datastore_client#*:}"
  else
    # etcd, as pinned by Kubernetes. --unsafe-no-fsync: the data is thrown away at the next
    # start, and fsync on a shared CI disk is what makes etcd slow.
    launch etcd "$bin/etcd" --name edgecast --data-dir "$state/etcd" \
      --listen-client-urls "http://$datastore_client" --advertise-client-urls "http://$datastore_client" \
      --listen-peer-urls "http://$etcd_peer" --initial-advertise-peer-urls "http://$etcd_peer" \
      --initial-cluster "edgecast=http://$etcd_peer" \
      --unsafe-no-fsync --log-level warn
    wait_for 60 "etcd" curl -sf --max-time 2 "http://$datastore_client/health"
  fi

  launch docker-proxy "$bin/kube" docker-proxy --listen "$state/run/docker.sock" --upstream /var/run/docker.sock
  wait_for 30 "the Docker API proxy" curl -sf --max-time 2 --unix-socket "$state/run/docker.sock" http://docker/_ping

  # cri-dockerd talks to Docker through the proxy (negative OOM scores clamped, see
  # kube/dockerproxy.go); pause image built here; Debian's CNI plugins; state under $state.
  launch cri-dockerd "$bin/cri-dockerd" \
    --container-runtime-endpoint "unix://$state/run/cri-dockerd.sock" \
    --docker-endpoint "unix://$state/run/docker.sock" \
    --cri-dockerd-root-directory "$state/cri-dockerd" \
    --pod-infra-container-image "$PAUSE_IMAGE" \
    --network-plugin cni --cni-bin-dir /usr/lib/cni --cni-conf-dir "$state/cni/net.d" \
    --cni-cache-dir "$state/cni/cache" \
    --streaming-bind-addr 127.0.0.1:10010 \
    --log-level info
  wait_for 60 "cri-dockerd" test -S "$state/run/cri-dockerd.sock"

  launch kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://$datastore_client" \
    --advertise-address "$ip" --bind-address 0.0.0.0 --secure-port "$api_port" \
    --service-cluster-ip-range "$service_cidr" \
    --client-ca-file "$state/pki/ca.crt" \
    --tls-cert-file "$state/pki/apiserver.crt" --tls-private-key-file "$state/pki/apiserver.key" \
    --kubelet-client-certificate "$state/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$state/pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$state/pki/ca.crt" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$state/pki/sa.pub" \
    --service-account-signing-key-file "$state/pki/sa.key" \
    --authorization-mode Node,RBAC \
    --requestheader-client-ca-file "$state/pki/ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --enable-admission-plugins NodeRestriction \
    --allow-privileged=true \
    --profiling=false
  wait_for 120 "the API server" curl -sf --max-time 2 --cacert "$state/pki/ca.crt" "https://127.0.0.1:$api_port/readyz"

  launch kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$state/pki/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/pki/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/pki/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10257 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$state/pki/sa.key" \
    --root-ca-file "$state/pki/ca.crt" \
    --cluster-signing-cert-file "$state/pki/ca.crt" --cluster-signing-key-file "$state/pki/ca.key" \
    --allocate-node-cidrs=true --cluster-cidr "$cluster_cidr" --node-cidr-mask-size 24 \
    --service-cluster-ip-range "$service_cidr" \
    --profiling=false

  launch kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$state/pki/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/pki/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/pki/kube-scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port 10259 \
    --leader-elect=false \
    --profiling=false

  launch kubelet "$bin/kubelet" \
    --config "$state/config/kubelet.yaml" \
    --kubeconfig "$state/pki/kubelet.kubeconfig" \
    --container-runtime-endpoint "unix://$state/run/cri-dockerd.sock" \
    --root-dir "$state/kubelet" --cert-dir "$state/kubelet/pki" \
    --hostname-override "$node_name" --node-ip "$ip"

  launch kube-proxy "$bin/kube-proxy" --config "$state/config/kube-proxy.yaml"

  wait_for "$start_timeout" "node $node_name to be Ready" node_ready
  wait_for 60 "the default ServiceAccount" default_service_account
  log "up in $((SECONDS - t0)) s (Kubernetes $K8S_VERSION, node $node_name at $ip); logs: $state/logs"
  echo "$state/pki/admin.kubeconfig"
}

stop_locked() {
  local bin i
  # The binaries this cluster was started with (the sources may have changed since).
  bin=$(cat "$state/run/bin-dir" 2>/dev/null || bin_dir)
  # The control plane and the kubelet first, so that nothing recreates what is removed below.
  stop_components kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver
  # Tear the pods down through the CRI while cri-dockerd still runs: the CNI DEL of each pod
  # releases its IP and removes its portmap and firewall rules.
  if component_pid cri-dockerd >/dev/null && [ -x "$bin/kube" ]; then
    "$bin/kube" cri-cleanup --endpoint "unix://$state/run/cri-dockerd.sock" --timeout 60s >&2 ||
      log "some pods could not be removed through the CRI; removing their containers directly"
  fi
  # Both datastores: the running cluster may have been started with the other one.
  stop_components cri-dockerd docker-proxy kine etcd
  # Whatever is left of the pods' containers: cri-dockerd names them k8s_* and labels them
  # io.kubernetes.docker.type. No other container is touched.
  if docker info >/dev/null 2>&1; then
    local ids
    ids=$(docker ps -aq --filter 'name=^k8s_' --filter 'label=io.kubernetes.docker.type')
    if [ -n "$ids" ]; then
      log "removing $(echo "$ids" | wc -l) pod container(s)"
      # shellcheck disable=SC2086
      docker rm -f $ids >/dev/null || true
    fi
  fi
  # kube-proxy's KUBE-* iptables chains.
  if [ -x "$bin/kube-proxy" ]; then
    "$bin/kube-proxy" --cleanup >"$state/logs/kube-proxy-cleanup.log" 2>&1 ||
      log "kube-proxy --cleanup failed (see $state/logs/kube-proxy-cleanup.log)"
  fi
  # The portmap and firewall rules of pods whose CNI DEL did not run, the kubelet's own
  # chains, and the CNI plugins' shared chains once nothing else uses them.
  remove_cni_leftovers
  remove_kubelet_chains
  remove_empty_cni_firewall_chains
  if ip link show "$bridge" >/dev/null 2>&1; then
    ip link del "$bridge"
  fi
  unmount_state
  restore_sysctls
  for i in "$state"/run/*.sock "$state/run/bin-dir"; do
    [ -e "$i" ] && rm -f "$i"
  done
  return 0
}

remove_cni_leftovers() {
  local rule chain chains=() prefix=${bridge_ip%.*}.
  # portmap: the DNAT rule of each pod names the network; it jumps to the pod's CNI-DN-* chain.
  while read -r rule; do
    chain=$(sed -n 's/.* -j \(CNI-DN-[0-9a-f]*\).*/\1/p' <<<"$rule")
    [ -n "$chain" ] && chains+=("$chain")
    delete_rule iptables nat "$rule"
  done < <(iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -F "$cni_network" || true)
  for chain in "${chains[@]}"; do
    iptables -t nat -F "$chain" 2>/dev/null || true
    iptables -t nat -X "$chain" 2>/dev/null || true
  done
  # firewall: the accept rules of each pod name its address, from this node's pod range.
  while read -r rule; do
    delete_rule iptables filter "$rule"
  done < <(iptables -S CNI-FORWARD 2>/dev/null | grep -F -e "-s $prefix" -e "-d $prefix" || true)
}

# The kubelet mounts pod volumes (tmpfs for secrets, configmaps and service-account tokens)
# under its root directory and unmounts them when it tears a pod down; a kubelet stopped with
# its pods leaves them mounted.
unmount_state() {
  local mountpoint
  awk -v prefix="$state/" 'index($5, prefix) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r mountpoint; do
      umount "$mountpoint" 2>/dev/null || umount -l "$mountpoint" 2>/dev/null ||
        log "could not unmount $mountpoint"
    done
}

# delete_rule IPTABLES TABLE RULE: RULE as `iptables -S` prints it ("-A CHAIN ..."), whose
# comments are quoted for the shell (hence eval).
delete_rule() {
  eval "$1 -t $2 ${3/-A /-D }" 2>/dev/null || true
}

# Delete a chain and every rule that jumps to it: delete_chain IPTABLES TABLE CHAIN.
delete_chain() {
  local cmd=$1 table=$2 chain=$3 rule
  $cmd -t "$table" -S "$chain" >/dev/null 2>&1 || return 0
  while read -r rule; do
    delete_rule "$cmd" "$table" "$rule"
  done < <($cmd -t "$table" -S 2>/dev/null | grep -E "^-A .* -j $chain( |\$)" || true)
  $cmd -t "$table" -F "$chain" 2>/dev/null || true
  $cmd -t "$table" -X "$chain" 2>/dev/null || true
}

# KUBE-FIREWALL, KUBE-KUBELET-CANARY and KUBE-IPTABLES-HINT are made by the kubelet alone
# (kube-proxy --cleanup leaves them).
remove_kubelet_chains() {
  local cmd table
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null || continue
    delete_chain "$cmd" filter KUBE-FIREWALL
    for table in filter nat mangle; do
      delete_chain "$cmd" "$table" KUBE-KUBELET-CANARY
    done
    delete_chain "$cmd" mangle KUBE-IPTABLES-HINT
  done
}

# rules_in TABLE CHAIN: how many rules CHAIN holds (0 when it does not exist).
rules_in() { iptables -t "$1" -S "$2" 2>/dev/null | grep -c '^-A ' || true; }

# The CNI plugins' shared chains (firewall: CNI-FORWARD, CNI-ADMIN; portmap: CNI-HOSTPORT-*)
# serve every CNI network on the host (podman's too): removed only when no other network has a
# rule left in them.
remove_empty_cni_firewall_chains() {
  if [ "$(rules_in filter CNI-ADMIN)" = 0 ] &&
    [ -z "$(iptables -S CNI-FORWARD 2>/dev/null | grep '^-A ' | grep -v -e '-j CNI-ADMIN$' || true)" ]; then
    delete_chain iptables filter CNI-FORWARD
    delete_chain iptables filter CNI-ADMIN
  fi
  if [ "$(rules_in nat CNI-HOSTPORT-DNAT)" = 0 ]; then
    delete_chain iptables nat CNI-HOSTPORT-DNAT
    delete_chain iptables nat CNI-HOSTPORT-SETMARK
    if [ "$(iptables -t nat -S CNI-HOSTPORT-MASQ 2>/dev/null | grep '^-A ' | grep -vc -e '--mark 0x2000/0x2000 -j MASQUERADE' || true)" = 0 ]; then
      delete_chain iptables nat CNI-HOSTPORT-MASQ
    fi
  fi
}

stop() {
  need_root
  mkdir -p "$state/run"
  exec 8>"$state/run/.lock"
  flock 8
  stop_locked
  log "stopped"
}

status() {
  local name pid rc=0
  for name in "${components[@]}"; do
    if pid=$(component_pid "$name"); then
      printf '%-24s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-24s not running\n' "$name"
      rc=1
    fi
  done
  if [ -f "$state/pki/ca.crt" ] && curl -sf --max-time 5 --cacert "$state/pki/ca.crt" "https://127.0.0.1:$api_port/readyz" >/dev/null; then
    echo "api server               ready (https://127.0.0.1:$api_port)"
  else
    echo "api server               not ready"
    rc=1
  fi
  if [ $rc = 0 ] && node_ready; then
    echo "node $node_name      Ready"
  else
    echo "node $node_name      not Ready"
    rc=1
  fi
  echo "kubeconfig               $state/pki/admin.kubeconfig"
  echo "binaries                 $(bin_dir)"
  return $rc
}

case ${1:-} in
  build) build && bin_dir ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  kubeconfig) echo "$state/pki/admin.kubeconfig" ;;
  *)
    echo "usage: $0 build|start|status|stop|kubeconfig" >&2
    exit 2
    ;;
esac
