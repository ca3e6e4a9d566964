#!/usr/bin/env bash
# Build the offline Vagrant box (libvirt provider, QEMU software emulation, direct kernel boot) and
# `vagrant box add` it, once per recipe: the box name carries a hash of everything that shapes it
# (this script, the apt sources, the login key), so an unchanged recipe reuses the cached box.
#
#   tests/smoke/build-box.sh            -> prints the box name on stdout (progress on stderr)
#
# Env: KF_SMOKE_CACHE (default /var/cache/kubeforge-smoke), KF_SMOKE_SUITE (default bookworm),
#      VAGRANT_HOME (default $KF_SMOKE_CACHE/vagrant.d).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${KF_SMOKE_CACHE:-/var/cache/kubeforge-smoke}"
SUITE="${KF_SMOKE_SUITE:-bookworm}"
# Vagrant's boxes live under the cache, not /root/.vagrant.d: QEMU runs as libvirt-qemu and must be
# able to reach the box's kernel and initrd (direct kernel boot), which /root (0700) would hide.
export VAGRANT_HOME="${VAGRANT_HOME:-$CACHE/vagrant.d}"
PACKAGES="linux-image-amd64,initramfs-tools,systemd-sysv,dbus,openssh-server,iproute2,iputils-ping,procps,sudo,ca-certificates,python3,kmod,netbase,apt,curl,e2fsprogs"
# Bump when the customization changes in a way the script's own hash would not notice.
RECIPE_VERSION=1

log() { echo "build-box: $*" >&2; }

mkdir -p "$CACHE"
chmod 0755 "$CACHE"
KEY="$CACHE/ssh/id_ed25519"
if [ ! -s "$KEY" ]; then
  # A key of our own instead of Vagrant's public "insecure" one: the VMs stay on an isolated network,
  # but there is no reason to log in with a key whose private half is published.
  mkdir -p -m 0700 "$CACHE/ssh"
  ssh-keygen -q -t ed25519 -N "" -C kubeforge-smoke -f "$KEY"
fi
chmod 0600 "$KEY"

SOURCES="$(cd "$REPO" && python3 -c 'from tests.lab.rootfs import runner_apt_sources; print("\n".join(runner_apt_sources()))')"
HASH="$( { cat "$0"; echo "$SOURCES"; cat "$KEY.pub"; echo "$SUITE $RECIPE_VERSION"; } | sha256sum | cut -c1-12)"
NAME="kubeforge/$SUITE-$HASH"
DIR="$CACHE/box-$HASH"

if vagrant box list --machine-readable 2>/dev/null | grep -q ",box-name,$NAME\$"; then
  log "box $NAME is cached"
  echo "$NAME"
  exit 0
fi

exec 9>"$CACHE/build-box.lock"
flock 9
started=$(date +%s)
WORK="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"

log "mmdebstrap $SUITE with a kernel into $ROOT (once per recipe)"
echo "$SOURCES" | mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
  --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash vagrant' \
  "$SUITE" "$ROOT" - >&2

# --- customize -------------------------------------------------------------------------------
: > "$ROOT/etc/machine-id"              # each VM gets its own at first boot
rm -f "$ROOT/var/lib/dbus/machine-id"
echo "vagrant ALL=(ALL) NOPASSWD:ALL" > "$ROOT/etc/sudoers.d/vagrant"
chmod 0440 "$ROOT/etc/sudoers.d/vagrant"
install -d -m 0700 "$ROOT/home/vagrant/.ssh"
install -m 0600 "$KEY.pub" "$ROOT/home/vagrant/.ssh/authorized_keys"
chroot "$ROOT" chown -R vagrant:vagrant /home/vagrant/.ssh
echo "vagrant:vagrant" | chroot "$ROOT" chpasswd

# Fresh host keys per VM at first boot, ed25519/ecdsa only (RSA takes long under emulation), so
# kubeforge's strict host-key checking verifies something real.
rm -f "$ROOT"/etc/ssh/ssh_host_*
cat > "$ROOT/etc/systemd/system/kubeforge-hostkeys.service" <<'EOF'
[Unit]
Description=Generate this VM's own SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
RequiredBy=ssh.service
EOF
cat > "$ROOT/etc/ssh/sshd_config.d/kubeforge-box.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
UseDNS no
EOF

# Every NIC asks DHCP (the libvirt network's dnsmasq) until Vagrant writes its static address in a
# lower-numbered file; that is how Vagrant first reaches a VM without a management network.
cat > "$ROOT/etc/systemd/network/99-kubeforge-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
EOF
printf '/dev/vda / ext4 defaults,noatime 0 1\n' > "$ROOT/etc/fstab"
echo kubeforge-box > "$ROOT/etc/hostname"
systemctl --root="$ROOT" enable kubeforge-hostkeys.service systemd-networkd.service ssh.service >&2
systemctl --root="$ROOT" mask systemd-networkd-wait-online.service systemd-firstboot.service >&2

# No route out: apt sees only what kubeforge configures (the smoke mirror).
: > "$ROOT/etc/apt/sources.list"
rm -f "$ROOT"/etc/apt/sources.list.d/* "$ROOT"/var/lib/apt/lists/* 2>/dev/null || true
rm -rf "$ROOT"/var/cache/apt/archives/*.deb

# --- package the box -------------------------------------------------------------------------
OUT="$WORK/box"
mkdir -p "$OUT"
cp "$ROOT"/boot/vmlinuz-* "$OUT/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$OUT/initrd"
chmod 0644 "$OUT/vmlinuz" "$OUT/initrd"
# The mirror builder resolves package closures against what the box already has installed.
mkdir -p "$WORK/status/var/lib/dpkg"
cp "$ROOT/var/lib/dpkg/status" "$WORK/status/var/lib/dpkg/status"

log "mkfs.ext4 -d into a raw image, then qcow2"
truncate -s 4G "$WORK/root.raw"
mkfs.ext4 -q -F -L root -d "$ROOT" "$WORK/root.raw" >&2
qemu-img convert -O qcow2 "$WORK/root.raw" "$OUT/box.img"
rm -f "$WORK/root.raw"
echo '{"provider":"libvirt","format":"qcow2","virtual_size":4}' > "$OUT/metadata.json"
cat > "$OUT/Vagrantfile" <<'EOF'
# Box defaults: QEMU software emulation (no KVM for guests here), booting the box's own kernel.
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.kernel = File.join(File.dirname(__FILE__), "vmlinuz")
    lv.initrd = File.join(File.dirname(__FILE__), "initrd")
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=1 quiet"
    lv.disk_bus = "virtio"
  end
end
EOF
tar -C "$OUT" -cf "$WORK/kubeforge.box" metadata.json Vagrantfile box.img vmlinuz initrd
vagrant box add --force --name "$NAME" "$WORK/kubeforge.box" >&2

rm -rf "$DIR"
mkdir -p "$DIR"
mv "$WORK/status" "$DIR/status"
echo "$NAME" > "$DIR/name"
log "built and added box $NAME in $(( $(date +%s) - started ))s"
echo "$NAME"
