"""``kubeforge init``: a commented starter inventory for a list of hosts, valid as written.

The shape follows the hosts: one control plane is reached directly (endpoint mode none); several
sit behind a VIP (haproxy + keepalived on load-balancer hosts when there are any, kube-vip
otherwise). etcd is external when some etcd hosts are not control planes, stacked otherwise.
The file is loaded back through the real loader before it is written, so it validates as written.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from kubeforge.errors import InputError, InventoryError, UsageError
from kubeforge.model import Role
from kubeforge.model.versions import newest_supported_minor

ROLE_NAMES = tuple(str(r) for r in Role)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class StarterHost:
    name: str
    address: str
    roles: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> StarterHost:
        """``cp-1=10.0.0.11:control-plane+etcd`` (roles joined by ``+`` or ``,``)."""
        name, sep, rest = spec.partition("=")
        address, colon, roles = rest.rpartition(":")
        if not sep or not colon or not name.strip() or not address.strip() or not roles.strip():
            raise UsageError(f"--host {spec!r}: expected NAME=ADDRESS:ROLES, e.g. cp-1=10.0.0.11:control-plane+etcd")
        wanted = tuple(dict.fromkeys(r.strip() for r in re.split(r"[+,]", roles) if r.strip()))
        unknown = [r for r in wanted if r not in ROLE_NAMES]
        if unknown:
            raise UsageError(f"--host {spec!r}: {', '.join(map(repr, unknown))} is not a role ({', '.join(ROLE_NAMES)})")
        if not _NAME.match(name.strip()):
            raise UsageError(f"--host {spec!r}: {name.strip()!r} is not a host name (lower-case letters, digits, '-')")
        return cls(name.strip(), address.strip().strip("[]"), wanted)


@dataclass(frozen=True)
class Written:
    path: Path
    summary: str


def _has(hosts: list[StarterHost], role: str) -> list[StarterHost]:
    return [h for h in hosts if role in h.roles]


def _placeholder_vip(hosts: list[StarterHost]) -> str:
    """An address beside the first control plane's (.250 of its /24) that no host uses; the comment
    above it says to change it."""
    used = {h.address for h in hosts}
    try:
        base = ipaddress.ip_address(_has(hosts, "control-plane")[0].address)
    except ValueError:
        return "192.0.2.250"  # TEST-NET-1: hosts given by DNS name
    if base.version == 6:
        return "fd00::250"
    for last in (250, 249, 248, 247):
        vip = str(ipaddress.ip_address(int(base) & ~0xFF | last))
        if vip not in used:
            return vip
    return "192.0.2.250"


def starter_text(*, name: str, hosts: list[StarterHost], kubernetes_version: str | None = None,
                 endpoint: str | None = None, ssh_user: str = "root") -> str:
    if not hosts:
        raise UsageError("no hosts given", hint="pass --host NAME=ADDRESS:ROLES for every host")
    cps = _has(hosts, "control-plane")
    if not cps:
        raise UsageError("no host has the control-plane role", hint="give at least one host control-plane")
    # Without --kubernetes-version: the first release of the newest minor upstream supports (the data
    # knows minors, not patches; the package source says which patches exist, and `plan up` shows it).
    version = kubernetes_version or f"{newest_supported_minor().name}.0"
    external = any("control-plane" not in h.roles for h in _has(hosts, "etcd"))
    lbs = _has(hosts, "load-balancer")
    workloads_on_cps = any("worker" in h.roles for h in cps)
    lines = [
        f"# kubeforge inventory for the cluster {name!r}, started by `kubeforge init`.",
        "# Check it with `kubeforge validate -i <this file>`; every field is in docs/inventory.md",
        "# (or `kubeforge schema` for editors).",
        "apiVersion: kubeforge.io/v1alpha1",
        "kind: Cluster",
        "metadata:",
        f"  name: {name}",
        "spec:",
        "  # The Kubernetes version `up` installs; `kubeforge upgrade --to X.Y.Z` moves it later.",
        f'  kubernetesVersion: "{version}"',
        "  network:",
        "    podCIDR: 10.244.0.0/16",
        "    serviceCIDR: 10.96.0.0/12",
        "    cni:",
        "      # The CNI manifest applied once the first control plane is up (an https URL or a path",
        "      # relative to this file). Nodes turn Ready only once a CNI runs.",
        "      name: custom",
        "      # manifest: https://example.com/your-cni.yaml",
        "  controlPlaneEndpoint:",
    ]
    if len(cps) == 1 and not endpoint and not lbs:
        lines += [
            "    # One control plane: the API is reached at its own address. To grow to HA later, put a",
            "    # DNS name or VIP here first (the certificates carry it).",
            "    mode: none",
        ]
    else:
        vip = endpoint or _placeholder_vip(hosts)
        mode = "haproxy" if lbs else "kube-vip"
        where = "keepalived on the load-balancer hosts" if lbs else "kube-vip on the control planes"
        lines += [
            f"    # The API's virtual IP, held by {where}: a free address in the hosts' subnet."
            + ("" if endpoint else " CHANGE IT."),
            f"    host: {vip}",
            "    port: 6443",
            f"    mode: {mode}",
            "    # The network interface the VIP lives on, the same name on every host that may hold it.",
            "    interface: eth0",
        ]
    lines += [
        "  etcd:",
        "    # external: etcd on the dedicated etcd hosts below; stacked: kubeadm's etcd on the control planes.",
        f"    topology: {'external' if external else 'stacked'}",
        "    backup:",
        "      keep: 7",
        "  ssh:",
        "    # A user your SSH key logs in as, root or with passwordless sudo (identityFile: which key).",
        f"    user: {ssh_user}",
        "    # strict: only hosts already in known_hosts; accept-new: trust a key on first contact.",
        "    hostKeyPolicy: accept-new",
    ]
    if workloads_on_cps:
        lines += [
            "  # A control plane here is also a worker, so control planes are not tainted NoSchedule.",
            "  allowWorkloadsOnControlPlanes: true",
        ]
    lines += ["  hosts:"]
    for h in hosts:
        roles = ", ".join(h.roles if external else [r for r in h.roles if not ("control-plane" in h.roles and r == "etcd")])
        lines += [f"    - name: {h.name}", f"      address: {h.address}", f"      roles: [{roles}]"]
    return "\n".join(lines) + "\n"


def write_starter(path: Path, *, name: str, hosts: list[StarterHost], kubernetes_version: str | None = None,
                  endpoint: str | None = None, ssh_user: str = "root", force: bool = False) -> Written:
    """Write the starter to ``path`` (0644, never over an existing file unless ``force``) after
    loading it back: a starter that would not validate is never written."""
    from kubeforge.inventory import load
    from kubeforge.inventory.summary import summary

    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path}: already exists", hint="choose another --file, or pass --force to overwrite it")
    text = starter_text(name=name, hosts=hosts, kubernetes_version=kubernetes_version, endpoint=endpoint,
                        ssh_user=ssh_user)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.write_text(text)
        try:
            result = load(tmp)
        except InventoryError as exc:  # a --host that cannot work: the problems, named after the real file
            raise InventoryError([replace(p, file=str(path)) for p in exc.problems + exc.warnings]) from None
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return Written(path=path, summary=summary(result.cluster))
