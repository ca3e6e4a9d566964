"""One host's OS patch state, for `kubeforge os upgrade`: what `apt-get upgrade` would change
(kubeforge's own Kubernetes and etcd packages apart), whether the host asks for a reboot, its boot
id, and an unfinished run's reboot record.

The probe (PROBE_SCRIPT) refreshes apt's package lists (as `apt list --upgradable` needs) and
changes nothing else; the parsers are pure and tested on recorded outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubeforge.errors import TransportError
from kubeforge.facts.script import split_sections
from kubeforge.model import Cluster
from kubeforge.transport.base import Command

# What `os upgrade` never moves: kubeforge's upgrade and etcd upgrade commands own these versions.
KEPT = ("kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni", "etcd", "etcd-server", "etcd-client")
MARKER = "/var/lib/kubeforge/os-upgrade-reboot"  # the boot id before a reboot kubeforge asked for
REBOOT_REQUIRED = "/var/run/reboot-required"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
_MARK = "@@kubeforge-os "

PROBE_SCRIPT = f"""export DEBIAN_FRONTEND=noninteractive LC_ALL=C
echo '{_MARK}update'
apt-get update -q -o Acquire::Retries=3 >/dev/null 2>&1 && echo ok || echo failed
echo '{_MARK}simulate'
apt-get -s -q upgrade 2>/dev/null | grep '^Inst ' || true
echo '{_MARK}held'
apt-mark showhold 2>/dev/null || true
echo '{_MARK}reboot'
if [ -e {REBOOT_REQUIRED} ]; then echo "required $(cat {REBOOT_REQUIRED}.pkgs 2>/dev/null | tr '\\n' ' ')"; fi
echo '{_MARK}kernel'
uname -r
echo '{_MARK}kernels'
ls /boot 2>/dev/null | sed -n 's/^vmlinuz-//p'
echo '{_MARK}boot'
cat {BOOT_ID}
echo '{_MARK}marker'
cat {MARKER} 2>/dev/null || true
"""

# "Inst libssl3 [3.0.11-1~deb12u1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])"
_INST = re.compile(r"^Inst (\S+) (?:\[([^\]]*)\] )?\((\S+)")


@dataclass(frozen=True)
class PackageUpgrade:
    name: str
    installed: str  # "" for a package the upgrade pulls in new
    candidate: str


@dataclass(frozen=True)
class OsFacts:
    """One host's patch state, from PROBE_SCRIPT."""

    host: str
    upgrades: tuple[PackageUpgrade, ...] = ()  # what `apt-get upgrade` would change, kept packages excluded
    kept: tuple[PackageUpgrade, ...] = ()  # Kubernetes / etcd packages with a newer version: left alone
    reboot_required: bool = False
    reboot_packages: tuple[str, ...] = ()  # reboot-required.pkgs
    running_kernel: str = ""
    newest_kernel: str = ""  # of /boot/vmlinuz-*; "" when none (a container)
    boot_id: str = ""
    marked: str = ""  # the boot id an unfinished run recorded before rebooting the host
    update_failed: bool = False

    @property
    def kernel_pending(self) -> bool:
        return bool(self.newest_kernel) and self.newest_kernel != self.running_kernel

    @property
    def needs_reboot(self) -> bool:
        return self.reboot_required or self.kernel_pending or bool(self.marked)

    @property
    def reboot_reason(self) -> str:
        if self.reboot_required:
            by = f" ({', '.join(self.reboot_packages)})" if self.reboot_packages else ""
            return f"{REBOOT_REQUIRED}{by}"
        if self.kernel_pending:
            return f"kernel {self.newest_kernel} installed, {self.running_kernel} running"
        if self.marked:
            return "an earlier run's reboot is not finished"
        return ""

    def to_dict(self) -> dict:
        return {"host": self.host, "upgrades": [u.__dict__ for u in self.upgrades], "kept": [u.__dict__ for u in self.kept],
                "reboot": self.needs_reboot, "reboot_reason": self.reboot_reason, "update_failed": self.update_failed}


def _version_key(v: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", v)]


def parse_simulation(text: str) -> list[PackageUpgrade]:
    out = []
    for line in text.splitlines():
        m = _INST.match(line.strip())
        if m:
            out.append(PackageUpgrade(m.group(1), m.group(2) or "", m.group(3)))
    return out


def parse_probe(host: str, stdout: str) -> OsFacts:
    parts = {name: [line.strip() for line in body.splitlines() if line.strip()]
             for name, body in split_sections(stdout, _MARK).items()}
    held = set(parts.get("held", []))
    every = parse_simulation("\n".join(parts.get("simulate", [])))
    kept_names = set(KEPT) | held
    kernels = sorted(parts.get("kernels", []), key=_version_key)
    reboot = next((line.split()[1:] for line in parts.get("reboot", []) if line.split()[0] == "required"), None)
    return OsFacts(
        host=host,
        upgrades=tuple(u for u in every if u.name not in kept_names),
        kept=tuple(u for u in every if u.name in kept_names),
        reboot_required=reboot is not None,
        reboot_packages=tuple(reboot or ()),
        running_kernel=(parts.get("kernel") or [""])[0],
        newest_kernel=kernels[-1] if kernels else "",
        boot_id=(parts.get("boot") or [""])[0],
        marked=(parts.get("marker") or [""])[0],
        update_failed=(parts.get("update") or ["failed"])[0] != "ok",
    )


def gather_os_facts(cluster: Cluster, pool, hosts) -> dict[str, OsFacts]:
    """Every selected host's patch state, in parallel; a host that does not answer stops here (exit 5)."""
    result = pool.fanout(hosts, lambda t: t.run(Command(script=PROBE_SCRIPT, sudo=True, timeout=300,
                                                        description="read the OS patch state")))
    bad = [o for o in result.failed + result.not_reached]
    if bad:
        raise TransportError(", ".join(o.host for o in bad), f"{len(bad)} host(s) gave no patch state: {bad[0].message}")
    return {h.name: parse_probe(h.name, result[h.name].value.stdout) for h in hosts}
