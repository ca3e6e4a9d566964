"""All facts of a host in ONE remote script: delimited sections, split locally, one parser each.

One exec per host instead of one per fact: on the lab a round trip costs a few ms with TCP_NODELAY
and ~45 ms without, and there are ~20 facts. Every section is read-only and runs in a subshell whose
failure is ignored, so one missing tool leaves only its own section empty.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from kubeforge.facts import parse_network, parse_software, parse_system
from kubeforge.facts.types import HostFacts

MARKER = "@@kubeforge-fact "

# What kubeforge itself needs from the kernel and sets in prepare; preflight judges these.
WANTED_MODULES = ("overlay", "br_netfilter")
SYSCTLS = (
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.ipv4.ip_forward",
    "net.ipv6.conf.all.forwarding",
)
PACKAGES = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "cri-tools",
    "kubernetes-cni",
    "containerd",
    "containerd.io",
    "runc",
    "etcd-server",
    "etcd-client",
    "haproxy",
    "keepalived",
)
BINARIES = ("kubeadm", "kubelet", "kubectl", "containerd", "etcd")
UNITS = ("kubelet", "containerd", "etcd", "haproxy", "keepalived")


@dataclass(frozen=True)
class Section:
    name: str
    shell: str  # bash, read-only; its stdout is the section body


def sections(etcd_data_dir: str = "/var/lib/etcd") -> tuple[Section, ...]:
    data = shlex.quote(etcd_data_dir)
    mods = " ".join(WANTED_MODULES)
    keys = " ".join(SYSCTLS)
    pkgs = " ".join(PACKAGES)
    bins = " ".join(BINARIES)
    units = " ".join(f"{u}.service" for u in UNITS)
    return (
        # first, so the sample sits as close as possible to the operator's "before" timestamp
        Section("time", "date +%s.%N"),
        Section("os", "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release"),
        Section("kernel", "uname -r"),
        Section("arch", "uname -m"),
        Section("hostname", "cat /proc/sys/kernel/hostname"),
        Section("cpus", "nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo"),
        Section("memory", "cat /proc/meminfo"),
        Section(
            "disks",
            f"for p in / /var/lib {data}; do q=$p; while [ ! -e \"$q\" ]; do q=$(dirname \"$q\"); done; "
            "printf '%s\\t%s\\t' \"$p\" \"$q\"; df -Pk \"$q\" | tail -n 1; done",
        ),
        Section("swap", "cat /proc/swaps"),
        Section("modules", "cut -d' ' -f1 /proc/modules"),
        Section(
            "modules_wanted",
            # Built-in modules may have no /sys/module entry, and containers have no /sys/module at
            # all: overlay shows itself in /proc/filesystems, br_netfilter by its net.bridge sysctls.
            f"for m in {mods}; do if [ -d /sys/module/$m ] "
            "|| grep -qs \"/$m.ko\" /lib/modules/$(uname -r)/modules.builtin "
            "|| { [ $m = overlay ] && grep -qw overlay /proc/filesystems; } "
            "|| { [ $m = br_netfilter ] && [ -d /proc/sys/net/bridge ]; }; then echo \"$m loaded\"; "
            "elif modinfo -n $m >/dev/null 2>&1 || "
            "[ -n \"$(find /lib/modules/$(uname -r) -name \"$m.ko*\" 2>/dev/null | head -n 1)\" ]; "
            "then echo \"$m loadable\"; else echo \"$m absent\"; fi; done",
        ),
        Section(
            "sysctls",
            f"for k in {keys}; do f=/proc/sys/${{k//.//}}; "
            "if [ -r \"$f\" ]; then printf '%s=%s\\n' \"$k\" \"$(cat \"$f\")\"; else echo \"$k=?\"; fi; done",
        ),
        Section(
            "ports",
            "if command -v ss >/dev/null 2>&1; then echo '#ss'; ss -Htlnp; "
            "else echo '#proc'; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; fi",
        ),
        Section("product_uuid", "cat /sys/class/dmi/id/product_uuid"),
        Section(
            "macs",
            "for d in /sys/class/net/*; do printf '%s %s\\n' \"${d##*/}\" \"$(cat \"$d/address\" 2>/dev/null)\"; done",
        ),
        Section(
            "packages",
            f"dpkg-query -W -f '${{Package}}\\t${{Version}}\\t${{db:Status-Abbrev}}\\n' {pkgs} 2>/dev/null",
        ),
        Section(
            "binaries",
            f"for b in {bins}; do command -v $b >/dev/null 2>&1 || continue; case $b in "
            "kubeadm) v=$(timeout 5 kubeadm version -o short 2>&1 | head -n 1);; "
            "kubectl) v=$(timeout 5 kubectl version --client 2>&1 | head -n 1);; "
            "*) v=$(timeout 5 $b --version 2>&1 | head -n 1);; esac; "
            "printf '%s\\t%s\\n' \"$b\" \"$(printf '%s' \"$v\" | tr -d '\\t')\"; done",
        ),
        Section(
            "units",
            f"systemctl show --no-pager -p Id -p LoadState -p ActiveState -p UnitFileState {units} 2>&1",
        ),
        # what `apt-mark showhold` prints, without its ~1 s of loading the apt cache
        Section("held", "dpkg --get-selections | awk '$2 == \"hold\" { print $1 }'"),
        # the file the kubelet hands CoreDNS (kubeadm: systemd-resolved's upstream list when resolved runs)
        Section(
            "dns",
            "f=/etc/resolv.conf; if [ \"$(systemctl is-active systemd-resolved 2>/dev/null)\" = active ] "
            "&& [ -f /run/systemd/resolve/resolv.conf ]; then f=/run/systemd/resolve/resolv.conf; fi; "
            "echo \"$f\"; awk '$1 == \"nameserver\" && NF > 1 { print $2 }' \"$f\"",
        ),
        Section(
            "applied",
            "if [ -f /etc/kubeforge/applied.json ]; then cat /etc/kubeforge/applied.json; else echo '#absent'; fi",
        ),
        # the files applied.json lists as they are now (an edit since kubeforge wrote one is drift);
        # the record is kubeforge's own JSON, one `"path": "sha256"` a line (kubeforge.render.record)
        Section(
            "applied_files",
            "echo '#checked'; [ -f /etc/kubeforge/applied.json ] || exit 0; "
            "sed -n 's@^ *\"\\(/[^\"]*\\)\": \"[0-9a-f]\\{64\\}\",\\{0,1\\}$@\\1@p' /etc/kubeforge/applied.json "
            "| while IFS= read -r p; do if [ -f \"$p\" ]; then sha256sum \"$p\"; else printf '#absent %s\\n' \"$p\"; fi; done",
        ),
        Section(
            "membership",
            "echo '#checked'; [ -e /etc/kubernetes/kubelet.conf ] && echo kubelet.conf; "
            f"[ -d {data}/member ] && echo etcd-data; "
            # traces of a kubeforge run that stopped before writing applied.json (it is written last);
            # the etcd stamp is the one `kubeforge etcd install` writes (kubeforge.facts.etcd)
            "[ -n \"$(ls -A /etc/kubeforge 2>/dev/null)\" ] && echo kubeforge-files; "
            "[ -f /etc/etcd/.kubeforge-applied ] && echo etcd-stamp; true",
        ),
    )


def build_script(etcd_data_dir: str = "/var/lib/etcd") -> str:
    parts = ["export LC_ALL=C"]
    for s in sections(etcd_data_dir):
        parts.append(f"echo '{MARKER}{s.name}'")
        # a subshell in an || list runs without errexit, so every command of the section is tried
        parts.append(f"( {s.shell} ) 2>/dev/null || true")
    return "\n".join(parts) + "\n"


def split_sections(stdout: str, marker: str = MARKER) -> dict[str, str]:
    """Section name -> body, for every probe that marks its sections with ``marker`` + name. Text
    before the first marker (login banners, motd) is dropped; a name seen again starts afresh."""
    out: dict[str, str] = {}
    current: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(marker):
            if current is not None:
                out[current] = "\n".join(lines)
            current, lines = line[len(marker) :].strip(), []
        elif current is not None:
            lines.append(line)
    if current is not None:
        out[current] = "\n".join(lines)
    return out


def parse_host_facts(
    host: str, stdout: str, *, local_before: float | None = None, local_after: float | None = None
) -> HostFacts:
    """Turn the script's whole stdout into HostFacts. Never raises on odd output."""
    s = split_sections(stdout)
    get: Callable[[str], str] = lambda name: s.get(name, "")  # noqa: E731
    problems: dict[str, str] = {}

    def note(name: str, value):
        problem = getattr(value, "problem", None)
        if problem:
            problems[name] = problem
        return value

    def scalar(name: str, value, what: str):
        if value is None:
            problems[name] = f"no {what} in the output" if not get(name).strip() else f"unreadable {what}: {get(name)[:80]!r}"
        return value

    facts = HostFacts(
        host=host,
        os=note("os", parse_system.parse_os_release(get("os"))),
        kernel=scalar("kernel", parse_system.parse_line(get("kernel")), "kernel release"),
        arch=scalar("arch", parse_system.parse_line(get("arch")), "architecture"),
        hostname=scalar("hostname", parse_system.parse_line(get("hostname")), "hostname"),
        cpus=scalar("cpus", parse_system.parse_cpus(get("cpus")), "CPU count"),
        memory=note("memory", parse_system.parse_meminfo(get("memory"))),
        disks=note("disks", parse_system.parse_disks(get("disks"))),
        swap=note("swap", parse_system.parse_swaps(get("swap"))),
        modules=note("modules", parse_system.parse_modules(get("modules"), get("modules_wanted"))),
        sysctls=note("sysctls", parse_system.parse_sysctls(get("sysctls"))),
        ports=note("ports", parse_network.parse_ports(get("ports"))),
        time=note("time", parse_system.parse_time(get("time"), local_before, local_after)),
        product_uuid=scalar("product_uuid", parse_system.parse_product_uuid(get("product_uuid")), "product_uuid"),
        macs=note("macs", parse_system.parse_macs(get("macs"))),
        packages=note("packages", parse_software.parse_packages(get("packages"), get("binaries"))),
        units=note("units", parse_software.parse_units(get("units"))),
        held=note("held", parse_software.parse_held(get("held"))),
        applied=note("applied", parse_software.parse_applied(get("applied"), get("applied_files"))),
        membership=note("membership", parse_software.parse_membership(get("membership"))),
        dns=note("dns", parse_system.parse_dns(get("dns"))),
        problems=problems,
    )
    return facts
