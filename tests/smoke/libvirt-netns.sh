#!/usr/bin/env bash
# libvirt for the offline smoke test, started by hand (no systemd here) inside a private network
# namespace, so its bridges, dnsmasq and firewall rules never touch the runner's own network.
#
#   tests/smoke/libvirt-netns.sh up      start virtlogd + libvirtd in netns $KF_SMOKE_NETNS, define a
#                                        dir storage pool under $KF_SMOKE_STATE, /dev/kvm -> root:kvm 0660
#   tests/smoke/libvirt-netns.sh down    destroy every domain and network libvirt knows, stop the
#                                        daemons, delete the namespace, put /dev/kvm back; idempotent
#   tests/smoke/libvirt-netns.sh env     print the variables the other scripts need (eval-able)
set -euo pipefail

NS="${KF_SMOKE_NETNS:-kfvagrant}"
STATE="${KF_SMOKE_STATE:-/var/tmp/kubeforge-smoke}"
POOL="${KF_LIBVIRT_POOL:-kubeforge-smoke}"
URI="qemu:///system"

log() { echo "libvirt-netns: $*" >&2; }
in_ns() { ip netns exec "$NS" "$@"; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for_libvirtd() {
  for _ in $(seq 1 100); do
    if virsh -c "$URI" version >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "libvirtd did not answer on $URI within 20 s; its log: $STATE/libvirtd.log"
  tail -20 "$STATE/libvirtd.log" >&2 || true
  return 1
}

up() {
  mkdir -p "$STATE/pool"
  chmod 0711 "$STATE"
  if alive "$STATE/libvirtd.pid"; then
    log "libvirtd already runs (pid $(cat "$STATE/libvirtd.pid"))"
    return 0
  fi
  if pgrep -x libvirtd >/dev/null; then
    log "another libvirtd runs on this machine (not ours); refusing to start a second one"
    return 1
  fi
  ip netns list | grep -qw "$NS" || ip netns add "$NS"
  in_ns ip link set lo up

  # Without udev /dev/kvm stays root-only, and libvirt then re-probes QEMU on every call (minutes
  # per `vagrant up`). Remember what it was so `down` can put it back exactly.
  if [ -e /dev/kvm ] && [ ! -e "$STATE/kvm.orig" ]; then
    stat -c '%u:%g %a' /dev/kvm > "$STATE/kvm.orig"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi

  in_ns virtlogd -d -p "$STATE/virtlogd.pid"
  in_ns libvirtd -d -p "$STATE/libvirtd.pid" >>"$STATE/libvirtd.log" 2>&1
  wait_for_libvirtd
  if ! virsh -c "$URI" pool-info "$POOL" >/dev/null 2>&1; then
    virsh -c "$URI" pool-define-as "$POOL" dir --target "$STATE/pool" >/dev/null
    virsh -c "$URI" pool-build "$POOL" >/dev/null
  fi
  virsh -c "$URI" pool-start "$POOL" >/dev/null 2>&1 || true
  log "libvirtd up in netns $NS (pool $POOL at $STATE/pool)"
}

down() {
  if alive "$STATE/libvirtd.pid"; then
    # VMs first (vagrant destroy normally did it; this catches a run that died before), then the
    # isolated networks, whose bridges and dnsmasq live in the namespace, then the box volumes.
    # Only what the Vagrantfile named (prefix kubeforge-): a package may have defined others, e.g. "default".
    for dom in $(virsh -c "$URI" list --all --name 2>/dev/null | grep '^kubeforge-'); do
      virsh -c "$URI" destroy "$dom" >/dev/null 2>&1 || true
      virsh -c "$URI" undefine "$dom" --nvram --remove-all-storage >/dev/null 2>&1 \
        || virsh -c "$URI" undefine "$dom" >/dev/null 2>&1 || true
    done
    for net in $(virsh -c "$URI" net-list --all --name 2>/dev/null | grep '^kubeforge-'); do
      virsh -c "$URI" net-destroy "$net" >/dev/null 2>&1 || true
      virsh -c "$URI" net-undefine "$net" >/dev/null 2>&1 || true
    done
    virsh -c "$URI" pool-destroy "$POOL" >/dev/null 2>&1 || true
    virsh -c "$URI" pool-undefine "$POOL" >/dev/null 2>&1 || true
  fi
  for d in libvirtd virtlogd; do
    if alive "$STATE/$d.pid"; then
      pid="$(cat "$STATE/$d.pid")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$d.pid"
  done
  # dnsmasq is started by libvirtd per network and outlives it; only those in our namespace go
  if ip netns list | grep -qw "$NS"; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns delete "$NS"
  fi
  if [ -s "$STATE/kvm.orig" ]; then
    read -r owner mode < "$STATE/kvm.orig"
    chown "$owner" /dev/kvm && chmod "$mode" /dev/kvm
    rm -f "$STATE/kvm.orig"
  fi
  rm -rf "$STATE/pool"
  log "libvirt stopped, netns $NS removed, /dev/kvm is $(stat -c '%U:%G %a' /dev/kvm 2>/dev/null || echo absent)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) printf 'export KF_SMOKE_NETNS=%q KF_LIBVIRT_POOL=%q KF_SMOKE_STATE=%q\n' "$NS" "$POOL" "$STATE" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
