#!/usr/bin/env bash
# The smoke test: real VMs, kubeforge's whole flow, one command.
#
#   tests/smoke/vagrant-smoke.sh [--mode offline|upstream]
#
# vagrant up -> kubeforge preflight -> kubeforge up -> every node Ready -> a workload (Deployment +
# Service) -> kubeforge etcd backup (verified) -> kubeforge upgrade --to <next minor> -> nodes Ready at
# the new version, workload still there -> kubeforge etcd restore of that backup -> healthy ->
# vagrant destroy, always (trap). Logs stay under the directory printed at the start and the end.
#
# Modes (docs/smoke.md): upstream = stock box, pkgs.k8s.io, real CNI (a machine with virtualization and
# internet); offline = the locally built box, libvirt in its own network namespace, packages from a
# mirror served inside that namespace, the kube simulator for kubeadm/kubelet/kubectl. Without
# --mode: offline when the smoke network namespace exists (tests/smoke/libvirt-netns.sh up), else
# upstream. Shape: the Vagrantfile's KF_* variables. KF_SMOKE_BREAK=stop-vm-before-up stops a VM
# before `kubeforge up` to show a failing run.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
cd "$REPO"  # python -m tests.smoke.* and the Vagrantfile are found from here
MODE="${KF_SMOKE_MODE:-auto}"
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) MODE="$2"; shift 2 ;;
    --mode=*) MODE="${1#*=}"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "vagrant-smoke: unknown argument $1" >&2; exit 2 ;;
  esac
done

NS="${KF_SMOKE_NETNS:-kfvagrant}"
CACHE="${KF_SMOKE_CACHE:-/var/cache/kubeforge-smoke}"
current_ns="$(ip netns identify $$ 2>/dev/null || true)"
if [ "$MODE" = auto ]; then
  if [ "$current_ns" = "$NS" ] || ip netns list 2>/dev/null | grep -qw "$NS"; then MODE=offline; else MODE=upstream; fi
fi
case "$MODE" in offline|upstream) ;; *) echo "vagrant-smoke: --mode $MODE: use offline or upstream" >&2; exit 2 ;; esac
if [ "$MODE" = offline ] && [ "$current_ns" != "$NS" ]; then
  # Everything offline (vagrant's SSH, kubeforge, the mirror) talks to VMs on bridges that exist
  # only inside the namespace.
  if ! ip netns list 2>/dev/null | grep -qw "$NS"; then
    echo "vagrant-smoke: offline mode needs libvirt in netns $NS: run tests/smoke/ci-stage.sh, or tests/smoke/libvirt-netns.sh up first" >&2
    exit 2
  fi
  exec ip netns exec "$NS" "$0" --mode offline
fi

export VAGRANT_CWD="$REPO" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_BOX_UPDATE_CHECK_DISABLE=1
LOGS="${KF_SMOKE_LOGS:-/var/tmp/kubeforge-smoke-logs/$(date -u +%Y%m%dT%H%M%SZ)-$MODE}"
mkdir -p "$LOGS"
LOGS="$(cd "$LOGS" && pwd)"
# Vagrant's per-run state beside the logs: a run never picks up another run's VMs.
export VAGRANT_DOTFILE_PATH="$LOGS/vagrant-state"
FROM="${KF_KUBE_VERSION:-1.33.5}"
TO="${KF_UPGRADE_TO:-1.34.2}"
INV="$LOGS/inventory.yaml"
KH="$LOGS/known_hosts"
MIRROR_PORT="${KF_MIRROR_PORT:-8470}"
if [ "$MODE" = offline ]; then
  export VAGRANT_HOME="${VAGRANT_HOME:-$CACHE/vagrant.d}" KF_ISOLATED=1 VAGRANT_DEFAULT_PROVIDER=libvirt
  export KF_SSH_KEY="${KF_SSH_KEY:-$CACHE/ssh/id_ed25519}"
  export KF_LIBVIRT_POOL="${KF_LIBVIRT_POOL:-kubeforge-smoke}"
  CNI="$HERE/manifests/kubesim-cni.yaml"
else
  CNI=""
fi
KF=(kubeforge)
command -v kubeforge >/dev/null || KF=(python3 -m kubeforge)

# ---- stage bookkeeping -----------------------------------------------------------------------
declare -a S_NAME S_RESULT S_SECS
FAILED=""
N=0
T0=$(date +%s)
stage() {  # stage NAME FUNCTION: runs it unless an earlier stage failed; output to NN-NAME.log
  local name="$1" fn="$2" log rc start
  N=$((N + 1))
  log="$LOGS/$(printf '%02d' "$N")-$name.log"
  if [ -n "$FAILED" ]; then
    S_NAME+=("$name"); S_RESULT+=("not run"); S_SECS+=("-"); return 1
  fi
  echo "==> [$name] (log: $log)"
  start=$(date +%s)
  "$fn" >"$log" 2>&1
  rc=$?
  S_NAME+=("$name"); S_SECS+=("$(( $(date +%s) - start ))")
  if [ $rc -eq 0 ]; then
    S_RESULT+=("ok"); tail -n 2 "$log" | sed 's/^/    /'
  else
    S_RESULT+=("FAILED (exit $rc)"); FAILED="$name"
    echo "!!! stage $name failed (exit $rc); last lines of $log:"; tail -n 25 "$log" | sed 's/^/    /'
  fi
  return $rc
}
need_kubeforge() {  # a kubeforge command this tree does not have fails its stage by name
  if ! "${KF[@]}" "$@" --help >/dev/null 2>&1; then
    echo "kubeforge $* does not exist in this tree (kubeforge $* --help failed): this stage cannot pass"
    return 1
  fi
}
first_cp() { python3 -c 'import json,sys; print(next(h["address"] for h in json.load(open(sys.argv[1]))["hosts"] if "control-plane" in h["roles"]))' "$LOGS/shape.json"; }
node_count() { python3 -c 'import json,sys; print(sum(1 for h in json.load(open(sys.argv[1]))["hosts"] if {"control-plane","worker"} & set(h["roles"])))' "$LOGS/shape.json"; }
kssh() {  # run a command on the first control plane over the private network, strict host keys
  ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$KH" -o ConnectTimeout=20 \
    -i "$KEY" "vagrant@$(first_cp)" "$@"
}
kubectl_cp() { kssh sudo kubectl --kubeconfig /etc/kubernetes/admin.conf "$@"; }
retry() {  # retry SECONDS CMD...: a readiness gate, not a sleep
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "gave up after waiting: $*"; return 1; fi
    sleep 5
  done
}

# ---- stages --------------------------------------------------------------------------------
s_box() {
  if [ "$MODE" = offline ]; then
    KF_BOX="$("$HERE/build-box.sh")" || return 1
    export KF_BOX
  fi
  echo "box ${KF_BOX:-debian/bookworm64} (mode $MODE)"
}
s_shape() {
  KF_SHAPE_OUT="$LOGS/shape.json" vagrant validate && cat "$LOGS/shape.json" && echo && \
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("shape:", ", ".join(h["name"]+"("+"+".join(h["roles"])+")" for h in d["hosts"]))' "$LOGS/shape.json"
}
s_vagrant_up() {
  local provider=()
  [ "$MODE" = offline ] && provider=(--provider=libvirt)
  vagrant up "${provider[@]}" && vagrant status
}
s_host_keys() {
  # Host keys read over Vagrant's own SSH session from each VM's files (not scanned off the network),
  # written for the private addresses kubeforge uses; kubeforge then checks them strictly.
  vagrant ssh-config > "$LOGS/ssh_config" || return 1
  KEY="${KF_SSH_KEY:-$(awk '/IdentityFile/ {print $2; exit}' "$LOGS/ssh_config")}"
  KEY="${KEY%\"}"; KEY="${KEY#\"}"
  : > "$KH"
  local name addr keys
  while read -r name addr; do
    keys="$(ssh -n -F "$LOGS/ssh_config" -o BatchMode=yes "$name" cat /etc/ssh/ssh_host_ed25519_key.pub /etc/ssh/ssh_host_ecdsa_key.pub)" || return 1
    awk -v a="$addr" 'NF >= 2 {print a, $1, $2}' <<<"$keys" >> "$KH"
  done < <(python3 -c 'import json,sys; [print(h["name"], h["address"]) for h in json.load(open(sys.argv[1]))["hosts"]]' "$LOGS/shape.json")
  chmod 0600 "$KH"
  local mirror=()
  [ "$MODE" = offline ] && mirror=(--mirror-url "http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["subnet"])' "$LOGS/shape.json").1:$MIRROR_PORT")
  (cd "$REPO" && python3 -m tests.smoke.inventory --shape "$LOGS/shape.json" --mode "$MODE" --key "$KEY" \
     --known-hosts "$KH" --version "$FROM" ${CNI:+--cni "$CNI"} "${mirror[@]}") > "$INV" || return 1
  echo "identity $KEY"; cat "$KH"
  "${KF[@]}" validate -i "$INV"
}
s_mirror() {
  local subnet root
  subnet="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["subnet"])' "$LOGS/shape.json")"
  # the box's dpkg status, kept by build-box.sh: the mirror holds what the box lacks
  root="$(cd "$REPO" && python3 -m tests.smoke.mirror --status-root "$CACHE/box-${KF_BOX##*-}/status" --out "$LOGS/mirror")" || return 1
  # Bound to the cluster network's host address inside the namespace: only the VMs can reach it.
  python3 -m http.server --bind "$subnet.1" --directory "$root" "$MIRROR_PORT" > "$LOGS/mirror-http.log" 2>&1 &
  echo $! > "$LOGS/mirror.pid"
  retry 20 curl -sf -o /dev/null "http://$subnet.1:$MIRROR_PORT/debian/Packages" && echo "mirror on http://$subnet.1:$MIRROR_PORT (pid $(cat "$LOGS/mirror.pid"))"
}
s_break() {
  case "${KF_SMOKE_BREAK:-}" in
    stop-vm-before-up)
      local victim
      victim="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hosts"][-1]["name"])' "$LOGS/shape.json")"
      echo "KF_SMOKE_BREAK=stop-vm-before-up: stopping $victim on purpose"
      vagrant halt --force "$victim" ;;
    "") echo "no break requested" ;;
    *) echo "KF_SMOKE_BREAK=$KF_SMOKE_BREAK: unknown (known: stop-vm-before-up)"; return 1 ;;
  esac
}
s_preflight() { need_kubeforge preflight && "${KF[@]}" preflight -i "$INV"; }
s_up() { need_kubeforge up && "${KF[@]}" up -i "$INV" --yes; }
nodes_ok() { kubectl_cp get nodes -o json | python3 -m tests.smoke.check nodes --count "$(node_count)" ${1:+--version "$1"}; }
s_nodes_ready() { retry 300 nodes_ok "$FROM" && kubectl_cp get nodes -o wide; }
workload_ok() {
  kubectl_cp get pods -o json | python3 -m tests.smoke.check pods --app smoke-web --replicas 2 || return 1
  kubectl_cp get services smoke-web -o json | python3 -m tests.smoke.check service --name smoke-web || return 1
  if [ "$MODE" = upstream ]; then
    # A real cluster routes the NodePort on every node to a pod: ask each node for the page.
    local addr
    for addr in $(python3 -c 'import json,sys; [print(h["address"]) for h in json.load(open(sys.argv[1]))["hosts"] if "worker" in h["roles"] or "control-plane" in h["roles"]]' "$LOGS/shape.json"); do
      curl -sf --max-time 10 "http://$addr:30080/" | grep -q "Welcome to nginx" || { echo "no nginx page on $addr:30080"; return 1; }
    done
    echo "smoke-web answers on every node's NodePort 30080"
  fi
}
s_workload() {
  kssh sudo kubectl --kubeconfig /etc/kubernetes/admin.conf apply -f - < "$HERE/manifests/workload.yaml" || return 1
  retry 300 workload_ok && kubectl_cp get pods -o wide
}
s_backup() {
  need_kubeforge etcd backup || return 1
  "${KF[@]}" etcd backup -i "$INV" --dir "$LOGS/backups" -o json > "$LOGS/backup.json" || return 1
  BACKUP="$(python3 -m tests.smoke.check backup < "$LOGS/backup.json")" || return 1
  echo "$BACKUP" > "$LOGS/backup.name"
  # a second opinion from the runner's own etcdctl, where it is installed
  if command -v etcdctl >/dev/null; then
    ETCDCTL_API=3 etcdctl snapshot status -w table "$LOGS/backups/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifest"]["file"])' "$LOGS/backup.json")" || return 1
  fi
  echo "backup $BACKUP"
}
s_upgrade() { need_kubeforge upgrade && "${KF[@]}" upgrade -i "$INV" --to "$TO" --yes; }
s_upgraded() { retry 300 nodes_ok "$TO" && retry 120 workload_ok && kubectl_cp version -o yaml; }
s_restore() {
  need_kubeforge etcd restore || return 1
  "${KF[@]}" etcd restore -i "$INV" --dir "$LOGS/backups" --from "$(cat "$LOGS/backup.name")" --yes
}
etcd_ok() { "${KF[@]}" etcd status -i "$INV" -o json | python3 -m tests.smoke.check etcd; }
s_healthy() { retry 180 etcd_ok && retry 300 nodes_ok && retry 120 workload_ok; }
s_destroy() {
  if [ -s "$LOGS/mirror.pid" ]; then kill "$(cat "$LOGS/mirror.pid")" 2>/dev/null; rm -f "$LOGS/mirror.pid"; fi
  vagrant destroy --force && vagrant status
}

finish() {
  local rc=$?
  trap - EXIT INT TERM
  # Destroy runs whatever happened before it, also after a failed stage or Ctrl-C.
  local saved="$FAILED"; FAILED=""
  stage destroy s_destroy || true
  [ -z "$saved" ] || FAILED="$saved"
  echo
  echo "kubeforge Vagrant smoke test, mode $MODE, Kubernetes $FROM -> $TO"
  printf '  %-14s %-18s %s\n' STAGE RESULT SECONDS
  local i
  for i in "${!S_NAME[@]}"; do printf '  %-14s %-18s %s\n' "${S_NAME[$i]}" "${S_RESULT[$i]}" "${S_SECS[$i]}"; done
  printf '  %-14s %-18s %s\n' total "" "$(( $(date +%s) - T0 ))"
  if [ -n "$FAILED" ]; then
    echo "FAIL: stage '$FAILED' failed; logs in $LOGS"
    exit 1
  fi
  [ "$rc" -eq 0 ] || { echo "FAIL: interrupted (exit $rc); logs in $LOGS"; exit "$rc"; }
  echo "PASS: logs in $LOGS"
  exit 0
}
trap finish EXIT
trap 'FAILED="${FAILED:-interrupted}"; exit 130' INT TERM

echo "kubeforge smoke test: mode $MODE, logs in $LOGS"
KEY=""
BACKUP=""
stage box s_box
stage shape s_shape
stage vagrant-up s_vagrant_up
stage host-keys s_host_keys
[ "$MODE" = offline ] && stage mirror s_mirror
[ -n "${KF_SMOKE_BREAK:-}" ] && stage break s_break
stage preflight s_preflight
stage up s_up
stage nodes-ready s_nodes_ready
stage workload s_workload
stage etcd-backup s_backup
stage upgrade s_upgrade
stage upgraded s_upgraded
stage etcd-restore s_restore
stage healthy s_healthy
