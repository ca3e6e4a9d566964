"""One nspawn machine: boot (LAB.md step 5), hard kill, and running commands inside it.

There is no machined here (PID 1 of the runner is not systemd), so ``machinectl shell`` cannot
reach the machines; commands enter the container init's namespaces with ``nsenter`` instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.lab.paths import LabError
from tests.lab.procs import Proc, spawn

INSIDE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
# Inside nspawn /sys is the runner's sysfs, and this runner has no DMI table at all (nor would a
# bind-mount at boot show: nspawn mounts sysfs over it). After boot, /sys/class gets a tmpfs with the
# real class directories bind-mounted back plus dmi/id/product_uuid, which tests can make equal or differ.
PRODUCT_UUID_SCRIPT = r"""
set -eu
if [ ! -d /sys/class/dmi/id ]; then
  mkdir -p /run/kubeforge-lab/sysclass
  mount --bind /sys/class /run/kubeforge-lab/sysclass
  mount --make-private /run/kubeforge-lab/sysclass  # else the tmpfs below propagates onto it too
  mount -t tmpfs -o mode=755 kubeforge-lab-sysclass /sys/class
  for d in /run/kubeforge-lab/sysclass/*; do
    mkdir "/sys/class/${d##*/}" && mount --bind "$d" "/sys/class/${d##*/}"
  done
  mkdir -p /sys/class/dmi/id
fi
umask 077
cat > /sys/class/dmi/id/product_uuid
chmod 0400 /sys/class/dmi/id/product_uuid
"""


# Without machined, ``--keep-unit`` leaves every container in nspawn's own cgroup, and each
# container's systemd then builds its units' cgroups (payload/system.slice/ssh.service...) in the
# SAME host directories: one machine's systemd removes a cgroup another one is starting a unit in,
# and units fail at random with status 219/CGROUP (seen with 8 machines under load). So each
# machine's nspawn starts in a cgroup of its own in the hierarchies the container manages.
CGROUP_PARENT = "kubeforge-lab"


def machine_cgroups(unit: str) -> list[Path]:
    """Per-machine cgroup directories: in the name=systemd and unified hierarchies on a hybrid/v1
    host (the ones a container's systemd writes to), or under the root of a pure cgroup2 host."""
    hybrid = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]
    found = [root for root in hybrid if (root / "cgroup.procs").exists()]
    if not found and Path("/sys/fs/cgroup/cgroup.controllers").exists():
        found = [Path("/sys/fs/cgroup")]
    return [root / CGROUP_PARENT / unit for root in found]


def remove_cgroups(unit: str) -> None:
    """Remove a stopped machine's cgroup trees, deepest first (a cgroup with processes stays)."""
    for d in machine_cgroups(unit):
        if not d.exists():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [d]:
            try:
                sub.rmdir()
            except OSError:
                pass


# Each machine's systemd holds inotify instances; Debian's default of 128 per user runs out after a
# few dozen machines on one runner (units then fail with "Too many open files" and sshd never starts).
INOTIFY_MINIMUMS = {"/proc/sys/fs/inotify/max_user_instances": 8192, "/proc/sys/fs/inotify/max_user_watches": 524288}


def ensure_host_limits(log=print) -> None:
    for path, minimum in INOTIFY_MINIMUMS.items():
        p = Path(path)
        try:
            if int(p.read_text()) < minimum:
                p.write_text(str(minimum))
                log(f"raised {path.removeprefix('/proc/sys/').replace('/', '.')} to {minimum} for the lab machines")
        except OSError as e:
            raise LabError(f"cannot raise {path} to {minimum} ({e}); lab machines would fail to boot") from None


def write_hosts_file(path: Path, machines: Sequence[tuple[str, str]]) -> None:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{addr} {name}" for name, addr in machines]
    path.write_text("\n".join(lines) + "\n")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def boot(*, rootfs: Path, mdir: Path, unit: str, hostname: str, address: str, prefixlen: int, gateway: str,
         bridge: str, machine_id: str, hosts_file: Path, persistent: bool, egress: bool = True,
         binds: Sequence[tuple[Path, str]] = ()) -> Proc:
    # A connected machine has a default route via the runner (which forwards nothing), so the
    # simulator's stand-in for the public registries answers (tests/sim/README.md "Images"); no DNS.
    # egress=False (a site with no way out): no route beyond the bridge (never a Gateway= here) and an
    # empty resolv.conf; the lab removes any default route and closes the runner after boot (network.cut_egress)
    route = f"Gateway={gateway}\n" if egress else ""
    net = _write(mdir / "05-host0.network",
                 f"[Match]\nName=host0\n\n[Network]\nAddress={address}/{prefixlen}\n{route}")
    name = _write(mdir / "hostname", hostname + "\n")
    argv = [
        "systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-b", "-M", unit, f"--uuid={machine_id}",
        f"--network-bridge={bridge}",
        f"--bind-ro={net}:/etc/systemd/network/05-host0.network",
        f"--bind-ro={name}:/etc/hostname",
        f"--bind-ro={hosts_file}:/etc/hosts",
        *(f"--bind-ro={src}:{dst}" for src, dst in binds),
    ]
    if not egress:
        # an empty resolv.conf, read-only: the resolver falls back to 127.0.0.1:53, where nothing listens
        argv += ["--resolv-conf=off", f"--bind-ro={_write(mdir / 'resolv.conf', '')}:/etc/resolv.conf"]
    if persistent:
        root = mount_overlay(rootfs, mdir)
        # a disk that survives makes `systemctl reboot` inside meaningful: boot again on exit 133
        argv = ["bash", "-c", REBOOT_LOOP, "kubeforge-lab-boot", *argv, "-D", str(root)]
    else:
        argv += ["-D", str(rootfs), "--volatile=overlay"]
    try:
        return spawn(argv, mdir / "console.log", cgroups=machine_cgroups(unit))
    except RuntimeError as e:
        raise LabError(f"{hostname}: systemd-nspawn did not start: {e}") from None


# nspawn exits 133 when the machine asks for a reboot (LAB.md step 7). SIGTERM is passed on to
# nspawn (a clean shutdown), which then exits 0 and ends the loop; a killed container ends it too.
REBOOT_LOOP = r"""
trap 'kill -TERM "$child" 2>/dev/null' TERM
while :; do
  "$@" &
  child=$!
  while :; do
    wait "$child"; rc=$?
    kill -0 "$child" 2>/dev/null || break
  done
  [ "$rc" -eq 133 ] || exit "$rc"
done
"""


# A machine's dir may name read-only layers between its upper dir and the root filesystem, top
# first, one path a line: the saved disks it was restored from (tests/lab/disks.py).
LOWERS = "lowers"


def lower_layers(mdir: Path) -> list[Path]:
    f = mdir / LOWERS
    return [Path(line) for line in f.read_text().splitlines() if line] if f.exists() else []


def set_lower_layers(mdir: Path, layers: Sequence[Path]) -> None:
    """The layers the machine's next boot stacks below its upper dir (none: the root filesystem alone)."""
    mdir.mkdir(parents=True, exist_ok=True)
    tmp = mdir / f"{LOWERS}.tmp"
    tmp.write_text("".join(f"{p}\n" for p in layers))
    tmp.replace(mdir / LOWERS)


def mount_overlay(rootfs: Path, mdir: Path) -> Path:
    """A copy-on-write disk kept in the state dir, so the machine keeps its files across stop/start:
    its upper dir over its saved layers (if any) over the shared root filesystem."""
    upper, work, root = mdir / "upper", mdir / "work", mdir / "root"
    for d in (upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    if not _is_mount(root):
        lower = ":".join(str(p) for p in [*lower_layers(mdir), rootfs])
        res = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", str(root)],
            capture_output=True, text=True,
        )
        if res.returncode != 0:
            raise LabError(f"overlay mount for {mdir.name} failed: {res.stderr.strip()}")
    return root


def unmount_overlay(mdir: Path) -> None:
    root = mdir / "root"
    if _is_mount(root):
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


def _is_mount(path: Path) -> bool:
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def leader_pid(nspawn: Proc) -> int:
    """The container's init (PID 1 inside): the nspawn process's child (its grandchild when a
    reboot loop runs nspawn)."""
    kids = nspawn.children()
    if kids and _comm(kids[0]) == "systemd-nspawn":
        kids = Proc(kids[0], "").children()
    if not kids:
        raise LabError(f"systemd-nspawn (pid {nspawn.pid}) has no container process yet")
    return kids[0]


def kill(nspawn: Proc | None) -> None:
    """Power off at once: SIGKILL to the container's init ends its whole PID namespace."""
    if nspawn is None or not nspawn.alive():
        return
    try:
        os.kill(leader_pid(nspawn), signal.SIGKILL)
    except (LabError, ProcessLookupError):
        pass
    if not nspawn.wait_gone(10):
        nspawn.signal(signal.SIGKILL)
        nspawn.wait_gone(10)


def nsenter(pid: int, argv: Sequence[str], *, input: str | bytes | None, timeout: float, check: bool) -> subprocess.CompletedProcess:
    text = not isinstance(input, bytes)
    res = subprocess.run(
        ["nsenter", "-t", str(pid), "-a", "--", *argv], input=input, capture_output=True, text=text,
        timeout=timeout, env=INSIDE_ENV,
    )
    if check and res.returncode != 0:
        raise LabError(f"inside pid {pid}: {' '.join(argv)} exited {res.returncode}: {str(res.stderr)[-800:]}")
    return res


def apply_product_uuid(leader: int, value: str) -> None:
    nsenter(leader, ["sh", "-c", PRODUCT_UUID_SCRIPT], input=value + "\n", timeout=30, check=True)
