#!/usr/bin/env bash
# The offline smoke test as one CI stage (.ci/run calls it after pytest), as root:
# build or reuse the box, start libvirt in its own network namespace, run the smoke test there, and
# clean up VMs, networks, the namespace and the /dev/kvm permission change whatever happens.
#
# Runner packages (apt): vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu
#   libvirt-clients dnsmasq-base qemu-system-x86 qemu-utils mmdebstrap e2fsprogs dpkg-dev
#   etcd-client (optional: a second check of the backup). Target: under 15 minutes.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
export KF_SMOKE_NETNS="${KF_SMOKE_NETNS:-kfvagrant}" KF_SMOKE_STATE="${KF_SMOKE_STATE:-/var/tmp/kubeforge-smoke}"
export KF_SMOKE_CACHE="${KF_SMOKE_CACHE:-/var/cache/kubeforge-smoke}"
export VAGRANT_HOME="${VAGRANT_HOME:-$KF_SMOKE_CACHE/vagrant.d}" VAGRANT_CHECKPOINT_DISABLE=1
export KF_SMOKE_LOGS="${KF_SMOKE_LOGS:-/var/tmp/kubeforge-smoke-logs/ci-$(date -u +%Y%m%dT%H%M%SZ)}"

if [ "$(id -u)" -ne 0 ]; then echo "ci-stage: needs root (network namespace, libvirtd, /dev/kvm)" >&2; exit 2; fi
missing=()
for tool in vagrant virsh libvirtd virtlogd qemu-system-x86_64 qemu-img mmdebstrap mkfs.ext4 dnsmasq dpkg-scanpackages; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then echo "ci-stage: missing on this runner: ${missing[*]} (see the package list at the top of $0)" >&2; exit 2; fi
if ! vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt; then echo "ci-stage: the vagrant-libvirt plugin is missing (apt install vagrant-libvirt)" >&2; exit 2; fi

T0=$(date +%s)
declare -a NAMES SECS RESULTS
timed() {  # timed NAME CMD...
  local s=$(date +%s) rc
  "${@:2}"; rc=$?
  NAMES+=("$1"); SECS+=("$(( $(date +%s) - s ))"); RESULTS+=("$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")
  return $rc
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Whatever the smoke script left (it destroys its VMs itself; this catches a crash or a kill):
  # domains, networks, pool, daemons, namespace, /dev/kvm as it was.
  timed cleanup "$HERE/libvirt-netns.sh" down
  echo
  echo "ci-stage (offline smoke) timings:"
  local i
  for i in "${!NAMES[@]}"; do printf '  %-12s %-18s %ss\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${SECS[$i]}"; done
  printf '  %-12s %-18s %ss\n' total "" "$(( $(date +%s) - T0 ))"
  echo "logs: $KF_SMOKE_LOGS"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of an earlier run that was killed hard (no trap ran) go first.
"$HERE/libvirt-netns.sh" down >/dev/null 2>&1 || true
timed box "$HERE/build-box.sh" >/dev/null || exit 1
timed libvirt "$HERE/libvirt-netns.sh" up || exit 1
timed smoke "$HERE/vagrant-smoke.sh" --mode offline
