"""Rules about hosts: names, addresses, labels, taints, roles, etcd membership and the endpoint."""

from __future__ import annotations

import re

from kubeforge.inventory.context import HOSTNAME, Context, as_ip, is_dns_subdomain
from kubeforge.inventory.paths import missing

_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HOST_KEY = re.compile(r"^(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+=*( .*)?$")
# kubelet's --node-labels may only use these in the kubernetes.io / k8s.io namespaces
_KUBELET_ALLOWED_LABELS = {
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
    "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type", "topology.kubernetes.io/region", "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region", "failure-domain.beta.kubernetes.io/zone",
}
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label/taint key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "the prefix before '/' is empty"
    if prefix and not is_dns_subdomain(prefix):
        return f"prefix '{prefix}' is not a DNS subdomain (lowercase letters, digits, '-', '.')"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return "the name part must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    return None


def _kubelet_may_set(key: str) -> bool:
    prefix, _, _ = key.rpartition("/")
    restricted = prefix.endswith("kubernetes.io") or prefix.endswith("k8s.io")
    if not restricted or key in _KUBELET_ALLOWED_LABELS:
        return True
    return prefix.endswith("kubelet.kubernetes.io") or prefix.endswith("node.kubernetes.io")


def check_host_entries(ctx: Context) -> None:
    names: dict[str, int] = {}
    addresses: dict = {}
    for i, h in ctx.hosts:
        if h.name is None:  # the schema already reported it
            pass
        elif not is_dns_subdomain(h.name):
            ctx.error(ctx.host_path(i, "name"), f"'{h.name}' is not a valid host name "
                      "(lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)")
        if h.name is not None and h.name in names:
            ctx.error(ctx.host_path(i, "name"), f"duplicate host name '{h.name}' (also hosts[{names[h.name]}])")
        names.setdefault(h.name, i)
        _check_addresses(ctx, i, h, addresses)
        _check_labels_taints(ctx, i, h)
        if len(set(h.roles)) != len(h.roles):
            ctx.warn(ctx.host_path(i, "roles"), "a role is listed more than once")
        if "control-plane" in h.roles and "worker" in h.roles and not ctx.spec.allow_workloads_on_control_planes:
            ctx.error(ctx.host_path(i, "roles"), "a control plane is tainted NoSchedule, so role 'worker' on it has no "
                      "effect; set spec.allowWorkloadsOnControlPlanes: true to run workloads on control planes")
        if h.host_key is not None and not _HOST_KEY.match(h.host_key.strip()):
            ctx.error(ctx.host_path(i, "hostKey"), "not an SSH public key (expected 'ssh-ed25519 AAAA...')")
        if h.ssh and h.ssh.identity_file and missing(ctx.base_dir, h.ssh.identity_file):
            ctx.warn(ctx.host_path(i, "ssh", "identityFile"), f"'{h.ssh.identity_file}' does not exist")


def _check_addresses(ctx: Context, i: int, h, seen: dict) -> None:
    if h.address is None:
        return
    if not (as_ip(h.address) or HOSTNAME.match(h.address)):
        ctx.error(ctx.host_path(i, "address"), f"'{h.address}' is neither an IP address nor a host name")
    if h.internal_address is not None:
        if not as_ip(h.internal_address):
            ctx.error(ctx.host_path(i, "internalAddress"), f"'{h.internal_address}' is not an IP address")
    elif not as_ip(h.address) and HOSTNAME.match(h.address):
        ctx.error(ctx.host_path(i, "address"), f"'{h.address}' is not an IP address; set internalAddress to the IP "
                  "cluster traffic uses (kubeadm and etcd advertise an IP)")
    _check_unique(ctx, i, h, seen)


def _norm(address: str) -> str:
    return str(as_ip(address) or address.lower().rstrip("."))


def _check_unique(ctx: Context, i: int, h, seen: dict) -> None:
    """Cluster (internal) addresses are unique; connect addresses are unique per SSH port.

    Several hosts may be reached through one address on different ports (NAT port forwards, a
    Vagrant host's 127.0.0.1:22xx) as long as each has its own internalAddress.
    """
    internal_seen: dict[str, int] = seen.setdefault("internal", {})
    connect_seen: dict[tuple[str, int], int] = seen.setdefault("connect", {})
    connect_any: dict[str, int] = seen.setdefault("connect_any", {})
    default_port = ctx.spec.ssh.port if ctx.ok("ssh") else 22
    port = h.ssh.port if h.ssh and h.ssh.port else default_port
    addr = _norm(h.address)
    reported = False
    if (addr, port) in connect_seen:
        j = connect_seen[(addr, port)]
        ctx.error(ctx.host_path(i, "address"), f"duplicate address '{h.address}' (also hosts[{j}])")
        reported = True
    internal = _norm(h.internal_address) if h.internal_address else addr
    key = "internalAddress" if h.internal_address else "address"
    if internal in internal_seen and not (reported and key == "address"):
        value = h.internal_address or h.address
        ctx.error(ctx.host_path(i, key), f"duplicate address '{value}' (also hosts[{internal_seen[internal]}])")
        reported = True
    elif h.internal_address and internal != addr and internal in connect_any and not reported:
        ctx.error(ctx.host_path(i, key), f"duplicate address '{h.internal_address}' (also hosts[{connect_any[internal]}])")
    connect_seen.setdefault((addr, port), i)
    connect_any.setdefault(addr, i)
    internal_seen.setdefault(internal, i)


def _check_labels_taints(ctx: Context, i: int, h) -> None:
    for key, value in h.labels.items():
        path = ctx.host_path(i, "labels", key)
        why = label_key_problem(key)
        if why:
            ctx.error(path, f"invalid label key '{key}': {why}", at_key=True)
        elif not _kubelet_may_set(key):
            ctx.error(path, f"the kubelet refuses to set label '{key}' (kubernetes.io/k8s.io namespaces are reserved; "
                      "use your own prefix or node.kubernetes.io/)", at_key=True)
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            ctx.error(path, f"invalid label value '{value}' (at most 63 letters, digits, '-', '_' or '.', "
                      "starting and ending with a letter or digit)")
    seen: set[tuple[str, str]] = set()
    for j, t in enumerate(h.taints):
        path = ctx.host_path(i, "taints", j)
        why = label_key_problem(t.key)
        if why:
            ctx.error(path + ("key",), f"invalid taint key '{t.key}': {why}")
        if t.value is not None and (len(t.value) > 63 or not _LABEL_VALUE.match(t.value)):
            ctx.error(path + ("value",), f"invalid taint value '{t.value}'")
        if (t.key, t.effect) in seen:
            ctx.error(path, f"duplicate taint '{t.key}:{t.effect}'")
        seen.add((t.key, t.effect))
        if t.key == CONTROL_PLANE_TAINT and ctx.spec.allow_workloads_on_control_planes:
            ctx.warn(path, "this taint keeps workloads off the control plane although allowWorkloadsOnControlPlanes is true")


def _anchor(ctx: Context, *parts) -> tuple:
    """Point at ``spec.<parts>`` if written, else at spec.hosts."""
    path = ctx.spec_path(*parts)
    return path if ctx.given(path) else ctx.spec_path("hosts")


def check_topology(ctx: Context) -> None:
    if not ctx.ok("hosts", "etcd"):
        return
    cps = ctx.with_role("control-plane")
    if not cps:
        ctx.error(ctx.spec_path("hosts"), "no host has role control-plane; at least one is required")
    topology = ctx.topology
    at = _anchor(ctx, "etcd", "topology")
    if topology == "stacked":
        for i, _h in ctx.with_role("etcd"):
            ctx.error(ctx.host_path(i, "roles"), "role 'etcd' is not used with stacked etcd (the members are the "
                      "control planes); remove it or set spec.etcd.topology: external")
        members = len(cps)
    else:
        members = len(ctx.with_role("etcd"))
        if not members:
            ctx.error(at, "external etcd needs hosts with role etcd (or set spec.etcd.topology: stacked)")
    if not members:
        return
    if topology == "stacked" and members == 2:
        ctx.error(ctx.spec_path("hosts"), "2 control planes need external etcd: a 2-member stacked etcd loses quorum "
                  "when either fails; use 1 or 3 control planes, or spec.etcd.topology: external")
    elif members % 2 == 0:
        ctx.error(at, f"{members} etcd members: the count must be odd (1, 3, 5, 7); an even count tolerates no more "
                  f"failures than {members - 1} and risks split votes")
    elif members == 1:
        ctx.warn(at, "a single etcd member has no fault tolerance; use 3 for production")
    elif members > 7:
        ctx.warn(at, f"{members} etcd members: more than 7 slows every write without useful extra fault tolerance")
    workers = ctx.with_role("worker")
    if not workers and not ctx.spec.allow_workloads_on_control_planes:
        ctx.warn(ctx.spec_path("hosts"), "no host runs workloads: there are no workers and control planes are tainted "
                 "(add workers or set allowWorkloadsOnControlPlanes: true)")


def _check_sans(ctx: Context, sans: list[str], at: tuple) -> None:
    """Each extra SAN goes into the API server's certificate: an IP address or a DNS name (a leading
    ``*.`` wildcard allowed), nothing else."""
    for i, san in enumerate(sans):
        name = san[2:] if san.startswith("*.") else san
        if as_ip(san) is None and not (0 < len(name) <= 253 and HOSTNAME.match(name)):
            ctx.error(at + (i,), f"'{san}' is neither an IP address nor a DNS name")


def check_endpoint(ctx: Context) -> None:
    if not ctx.ok("control_plane_endpoint"):
        return
    ep = ctx.spec.control_plane_endpoint
    base = ("spec", "controlPlaneEndpoint")
    cps = ctx.with_role("control-plane")
    lbs = ctx.with_role("load-balancer")
    mode_at = base + ("mode",) if ctx.given(base + ("mode",)) else (base if ctx.given(base) else ctx.spec_path("hosts"))
    hosts_ok = ctx.ok("hosts")
    _check_sans(ctx, ep.extra_sans, base + ("extraSANs",))
    if hosts_ok and len(cps) > 1 and ep.mode == "none":
        ctx.error(mode_at, f"{len(cps)} control planes need a shared API endpoint: set controlPlaneEndpoint.host and "
                  "mode (kube-vip, haproxy or external)")
    if ep.mode != "none" and not ep.host:
        ctx.error(base, f"'host' is required with mode {ep.mode} (the VIP or DNS name of the API)")
    vip = as_ip(ep.host)
    if ep.mode in ("kube-vip", "haproxy"):
        if ep.host and not vip:
            ctx.error(base + ("host",), f"mode {ep.mode} serves a virtual IP; '{ep.host}' is not an IP address")
        if not ep.interface:
            what = "kube-vip" if ep.mode == "kube-vip" else "keepalived"
            ctx.error(mode_at, f"mode {ep.mode} needs 'interface': the network interface {what} puts the VIP on")
    if ep.host and not vip and not HOSTNAME.match(ep.host):
        ctx.error(base + ("host",), f"'{ep.host}' is neither an IP address nor a DNS name")
    if ep.mode in ("kube-vip", "haproxy") and vip:
        for i, h in ctx.hosts:
            if vip in (as_ip(h.address), as_ip(h.internal_address)):
                ctx.error(base + ("host",), f"the VIP {ep.host} is also the address of hosts[{i}] ({h.name}); "
                          "a VIP must be an unused address")
    if not hosts_ok:
        return
    if ep.mode == "haproxy":
        if not lbs:
            ctx.error(mode_at, "mode haproxy needs hosts with role load-balancer (haproxy+keepalived run there)")
        elif len(lbs) == 1:
            ctx.warn(ctx.host_path(lbs[0][0], "roles"), "a single load-balancer host is a single point of failure")
        for i, h in lbs:
            if "control-plane" in h.roles and ep.port == 6443:
                ctx.error(ctx.host_path(i, "roles"), "haproxy on a control plane cannot listen on 6443 (the API server's "
                          "port); use another controlPlaneEndpoint.port")
    elif lbs:
        ctx.warn(ctx.host_path(lbs[0][0], "roles"), f"hosts with role load-balancer are unused with endpoint mode {ep.mode} "
                 "(only mode haproxy runs haproxy+keepalived on them)")
