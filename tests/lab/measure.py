"""Numbers for the lab: image build, boot of 3 and 8 machines, memory per idle machine, teardown.

    python -m tests.lab.measure [--rootfs] [--runs 3]

Printed beside the figures LAB.md recorded on this kind of machine, and the runner's load, since
labs of other sessions share the same two cores. ``--rootfs`` also times a fresh image build (into
a temporary cache dir) next to a bare mmdebstrap of the same package set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lab import claims
from tests.lab.lab import Lab
from tests.lab.layout import layout

LAB_MD = {"rootfs": "~35-40 s", "boot3": "~2 s (3-5 hosts)", "mem": "~25 MB", "teardown": "-"}


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def machine_pss_mib(lab: Lab, name: str) -> float:
    """Proportional memory of every process inside the machine's PID namespace."""
    ns = os.readlink(f"/proc/{lab.leader_pid(name)}/ns/pid")
    total = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "ns/pid") == ns:
                    total += _pss_kib(int(p.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return total / 1024


def boot_and_measure(n: int, with_mirror: bool) -> tuple[float, float, float]:
    index, fd = claims.claim()
    try:
        lab = Lab(layout(n), index=index, with_mirror=with_mirror, log=lambda *_: None)
        t0 = time.monotonic()
        lab.up()
        boot = time.monotonic() - t0
        time.sleep(10)  # let first-boot units finish so "idle" means idle
        mem = statistics.median(machine_pss_mib(lab, m) for m in lab.machines)
        t0 = time.monotonic()
        lab.down()
        return boot, mem, time.monotonic() - t0
    finally:
        claims.release(fd)


def rootfs_build() -> tuple[float, float]:
    from tests.lab.rootfs import PACKAGES, SUITE, runner_apt_sources

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        env = dict(os.environ, KUBEFORGE_LAB_CACHE=tmp)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "from tests.lab.rootfs import ensure_rootfs; ensure_rootfs(log=lambda *_: None)"],
                       env=env, check=True)
        ours = time.monotonic() - t0
        t0 = time.monotonic()
        subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE,
                        f"{tmp}/bare", "-"], input="\n".join(runner_apt_sources()) + "\n", text=True, check=True)
        bare = time.monotonic() - t0
    return ours, bare


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.measure")
    ap.add_argument("--rootfs", action="store_true", help="also time a fresh image build (~1 min)")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    print(f"runner: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    if args.rootfs:
        ours, bare = rootfs_build()
        print(f"image build (mmdebstrap + customize): {ours:6.1f} s   bare mmdebstrap, same packages: {bare:6.1f} s   LAB.md: {LAB_MD['rootfs']}")
    for n, mirror in ((3, True), (3, False), (8, False)):
        runs = [boot_and_measure(n, mirror) for _ in range(args.runs)]
        boot, mem, down = (statistics.median(r[i] for r in runs) for i in range(3))
        label = f"{n} machines{' + mirror' if mirror else ''}"
        print(f"{label:<22} boot to SSH + known_hosts + inventory: {boot:5.1f} s   idle PSS/machine: {mem:5.1f} MiB"
              f"   teardown: {down:4.1f} s   (LAB.md: boot {LAB_MD['boot3']}, {LAB_MD['mem']}/machine)")
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
