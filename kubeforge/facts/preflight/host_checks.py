"""Checks of one host against its own facts: sudo, OS, swap, modules, sysctls, ports, CPU/RAM/disk.

Pure functions of (cluster, host, facts): unit-testable with recorded facts, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from kubeforge.facts.preflight import requirements as req
from kubeforge.facts.preflight.report import CheckResult, failed, passed, warned
from kubeforge.facts.types import HostFacts, ModuleState
from kubeforge.model import Cluster, Host, Role
from kubeforge.model.versions import supported_arch, supported_os

SUPPORTED_OS = supported_os()  # kubeforge/model/versions.yaml
SUPPORTED_ARCH = supported_arch()
NODE_SYSCTLS = ("net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward")
NODE_MODULES = ("overlay", "br_netfilter")

HostCheck = Callable[[Cluster, Host, HostFacts], Iterator[CheckResult]]


def _gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / req.GIB:.1f} GiB"


def prepared_by_us(cluster: Cluster, facts: HostFacts) -> bool:
    """kubeforge has already prepared this host for this cluster (its applied.json says so)."""
    record = facts.applied.record
    return record is not None and bool(record) and record.get("cluster") == cluster.name


def check_os(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    os_ = facts.os
    if os_.id is None:
        yield warned(host.name, "os", f"cannot tell the OS: {os_.problem}")
    elif os_.family != "debian":
        yield failed(
            host.name,
            "os",
            f"{os_.pretty_name or os_.id} is not supported: kubeforge installs with apt on the Debian "
            "family (Debian 11-13, Ubuntu 22.04/24.04)",
        )
    elif os_.version_id not in SUPPORTED_OS.get(os_.id, ()):
        yield warned(host.name, "os", f"{os_.pretty_name or os_.id} is Debian-family but not a tested release")
    else:
        yield passed(host.name, "os", os_.pretty_name or f"{os_.id} {os_.version_id}")
    if facts.arch is not None and facts.arch not in SUPPORTED_ARCH:
        yield failed(host.name, "os", f"architecture {facts.arch} is not supported (amd64, arm64)")


def check_swap(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    if not req.is_node(req.effective_roles(cluster, host)):
        return
    swap = facts.swap
    if swap.enabled is None:
        yield warned(host.name, "swap", f"cannot tell whether swap is on: {swap.problem}")
    elif swap.enabled:
        devs = ", ".join(f"{d.name} ({d.size_kib / 1024**2:.1f} GiB)" for d in swap.devices)
        # Swap back on a host kubeforge prepared (it commented out fstab's swap lines and masked the swap
        # units) was put back by someone; turning it off again is theirs to decide, as on a new host.
        since = (" (kubeforge turned it off when it prepared this host: an /etc/fstab entry or a swap unit "
                 "turned it on again, at a boot or since)") if prepared_by_us(cluster, facts) else ""
        node = "; this node's kubelet cannot start until it is off" if facts.membership.kubelet_conf else ""
        yield failed(
            host.name,
            "swap",
            f"swap is on: {devs}{since}; the kubelet refuses to run with swap{node}: `swapoff -a` and remove it "
            "from /etc/fstab",
        )
    else:
        yield passed(host.name, "swap", "swap is off")


def check_modules(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    if not req.is_node(req.effective_roles(cluster, host)):
        return
    problems: list[tuple[str, str]] = []
    for name in NODE_MODULES:
        state = facts.modules.state(name)
        if state is ModuleState.ABSENT:
            problems.append(("fail", f"kernel module {name} is neither loaded nor available for kernel {facts.kernel}"))
        elif state is ModuleState.LOADABLE:
            problems.append(("warn", f"kernel module {name} is not loaded yet; kubeforge loads it when it prepares the host"))
        elif state is ModuleState.UNKNOWN:
            problems.append(("warn", f"cannot tell whether kernel module {name} is loaded: {facts.modules.problem}"))
    if any(kind == "fail" for kind, _ in problems):
        yield failed(host.name, "modules", "; ".join(m for _, m in problems))
    elif problems:
        yield warned(host.name, "modules", "; ".join(m for _, m in problems))
    else:
        yield passed(host.name, "modules", "overlay and br_netfilter are loaded")


def check_sysctls(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    """Before ``up`` a wrong value is only a warning: preparing the host sets these. On a host
    kubeforge has already prepared for this cluster, a wrong value is drift, and fails."""
    if not req.is_node(req.effective_roles(cluster, host)):
        return
    wrong = []
    for key in NODE_SYSCTLS:
        value = facts.sysctls.values.get(key)
        if value != "1":
            if value is not None:
                shown = value
            elif key in facts.sysctls.values:
                shown = "absent (it appears once br_netfilter is loaded)" if "bridge" in key else "absent"
            else:
                shown = "unknown"
            wrong.append(f"{key} is {shown}, needs 1")
    if not wrong:
        yield passed(host.name, "sysctls", "bridge-nf-call-iptables and ip_forward are 1")
    elif prepared_by_us(cluster, facts):
        yield failed(host.name, "sysctls", "; ".join(wrong) + " (kubeforge set it before: something changed it since)")
    else:
        yield warned(host.name, "sysctls", "; ".join(wrong) + " (kubeforge sets it when it prepares the host)")


# Programs kubeforge runs on its hosts, as ss names them (the kernel's 15-character comm).
OUR_PROGRAMS = frozenset(
    {"kube-apiserver", "kube-controller", "kube-scheduler", "kube-proxy", "kubelet", "etcd", "haproxy", "keepalived"}
)


def managed_by_us(cluster: Cluster, facts: HostFacts, need: req.PortNeed) -> bool:
    """kubeforge has worked on this host for this cluster: its applied.json says so, or, when a run
    stopped before writing that record (it is written last), it left its files or its etcd stamp.
    A record naming another cluster means the host is not ours, whatever else is there."""
    record = facts.applied.record
    if record is not None:
        return record.get("cluster") == cluster.name
    if need.unit == "etcd" and facts.membership.etcd_stamp:
        return True
    return facts.membership.kubeforge_files


def _ours(cluster: Cluster, facts: HostFacts, need: req.PortNeed, process: str | None) -> bool:
    if not managed_by_us(cluster, facts, need):
        return False
    if process is not None:
        return process == need.process or process in OUR_PROGRAMS
    # without a process name (ss run without root), the service that should hold the port must be up
    return facts.units.is_active(need.unit or "kubelet")


def check_ports(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    needs = req.required_ports(cluster, host)
    if not needs:
        return
    if facts.ports.source is None:
        yield warned(host.name, "ports", f"cannot list listening ports: {facts.ports.problem}")
        return
    taken, ours, free = [], [], []
    for need in needs:
        listener = next(iter(facts.ports.on(need.port)), None)
        if listener is None:
            free.append(str(need.port))
        elif _ours(cluster, facts, need, listener.process):
            ours.append(f"{need.port} ({need.what})")
        else:
            by = listener.process or "an unknown process"
            taken.append(f"{need.port} ({need.what}) is in use by {by} on {listener.address}")
    if taken:
        yield failed(host.name, "ports", "; ".join(taken))
        return
    parts = [f"already ours: {', '.join(ours)}"] if ours else []
    parts += [f"free: {', '.join(free)}"] if free else []
    yield passed(host.name, "ports", "; ".join(parts))


def check_cpu_memory(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    hard = req.hard_minimum(cluster, host)
    rec = req.recommendation(cluster, host)
    cpus, mem = facts.cpus, facts.memory.total_bytes
    if cpus is None:
        yield warned(host.name, "cpu", "cannot tell the number of CPUs")
    elif cpus < hard.cpus:
        yield failed(host.name, "cpu", f"{cpus} CPU(s); a {hard.why} needs at least {hard.cpus}")
    elif rec and cpus < rec.cpus:
        yield warned(host.name, "cpu", f"{cpus} CPU(s); {rec.cpus} recommended for a {rec.why}")
    else:
        yield passed(host.name, "cpu", f"{cpus} CPU(s)")
    if mem is None:
        yield warned(host.name, "memory", f"cannot tell the memory size: {facts.memory.problem}")
    elif mem < hard.memory_bytes * req.MEMORY_SLACK:
        yield failed(host.name, "memory", f"{_gib(mem)} of memory; a {hard.why} needs at least {_gib(hard.memory_bytes)}")
    elif rec and mem < rec.memory_bytes * req.MEMORY_SLACK:
        yield warned(host.name, "memory", f"{_gib(mem)} of memory; {_gib(rec.memory_bytes)} recommended for a {rec.why}")
    else:
        yield passed(host.name, "memory", f"{_gib(mem)} of memory")


def check_disk(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    roles = req.effective_roles(cluster, host)
    results: list[tuple[str, str]] = []
    if req.is_node(roles):
        var_lib = facts.disks.for_path("/var/lib")
        if var_lib is None or var_lib.available_bytes is None:
            results.append(("warn", f"cannot tell free space on /var/lib: {facts.disks.problem}"))
        elif var_lib.available_bytes < req.NODE_DISK_HARD:
            results.append(("fail", f"/var/lib has {_gib(var_lib.available_bytes)} free; images need at least {_gib(req.NODE_DISK_HARD)}"))
        elif var_lib.available_bytes < req.NODE_DISK_WARN:
            results.append(("warn", f"/var/lib has {_gib(var_lib.available_bytes)} free; {_gib(req.NODE_DISK_WARN)} recommended"))
    if Role.ETCD in roles:
        data = facts.disks.for_path(cluster.etcd.data_dir)
        quota = cluster.etcd.quota_backend_bytes
        if data is None or data.available_bytes is None or data.size_bytes is None:
            results.append(("warn", f"cannot tell the disk of {cluster.etcd.data_dir}: {facts.disks.problem}"))
        elif data.available_bytes < quota:
            results.append(("fail", f"{cluster.etcd.data_dir} has {_gib(data.available_bytes)} free, less than the etcd quota of {_gib(quota)}"))
        elif data.size_bytes < req.ETCD_DISK_RECOMMENDED:
            results.append(("warn", f"the disk of {cluster.etcd.data_dir} is {data.size_bytes / req.GB:.0f} GB; 20 GB recommended for etcd"))
    if not results:
        usage = facts.disks.for_path("/var/lib") or facts.disks.for_path("/")
        free = _gib(usage.available_bytes) if usage else "unknown"
        yield passed(host.name, "disk", f"{free} free on /var/lib")
        return
    worst = "fail" if any(k == "fail" for k, _ in results) else "warn"
    yield (failed if worst == "fail" else warned)(host.name, "disk", "; ".join(m for _, m in results))


def check_dns(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    """kubeadm's Corefile forwards what is not the cluster's to the node's resolv.conf (``forward .
    /etc/resolv.conf``), and CoreDNS's forward plugin refuses to start without a name server there
    ("plugin/forward: no nameservers found", coredns/coredns#5764): on a node of a site with no DNS
    CoreDNS crash-loops. The cluster still comes up, so this warns."""
    if not req.is_node(req.effective_roles(cluster, host)):
        return
    dns = facts.dns
    if dns.problem is not None:
        yield warned(host.name, "dns", f"cannot tell the node's name servers: {dns.problem}")
    elif dns.path is None:
        return  # not gathered (an older facts record)
    elif not dns.nameservers:
        yield warned(host.name, "dns", f"{dns.path} names no name server: CoreDNS (kubeadm's Corefile: forward . "
                     "/etc/resolv.conf) exits with 'plugin/forward: no nameservers found' on this node; give the "
                     "nodes the site's name server, or take the forward line out of the coredns ConfigMap")
    else:
        yield passed(host.name, "dns", f"{dns.path}: {', '.join(dns.nameservers)}")


def check_sudo(cluster: Cluster, host: Host, facts: HostFacts) -> Iterator[CheckResult]:
    """Every change runs as root: as the login user root, or through ``sudo -n`` (never a password
    prompt: there is no terminal to answer it). Judged on what the facts script met, since the login
    user may come from the ssh config rather than the inventory."""
    user = host.ssh.user if "user" in host.ssh.given or host.ssh.user != "root" else "the login user"
    problem = facts.problems.get("sudo")
    if problem is not None:
        who = user if user != "the login user" else "<user>"
        yield failed(host.name, "sudo", f"passwordless sudo does not work for {user} ({problem[:160]}); kubeforge "
                     f"runs every change through `sudo -n`: give it passwordless sudo (e.g. "
                     f"/etc/sudoers.d/kubeforge: `{who} ALL=(ALL) NOPASSWD: ALL`) or log in as root")
        return
    if host.ssh.user != "root" and not host.ssh.sudo:
        yield failed(host.name, "sudo", f"{user} is not root and ssh.sudo is false: kubeforge cannot install or "
                     "change anything on this host; log in as root or set ssh.sudo: true with passwordless sudo")
        return
    yield passed(host.name, "sudo", "root, or passwordless sudo works")


HOST_CHECKS: tuple[HostCheck, ...] = (
    check_sudo,
    check_os,
    check_swap,
    check_modules,
    check_sysctls,
    check_ports,
    check_cpu_memory,
    check_disk,
    check_dns,
)
