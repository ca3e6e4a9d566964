"""The API endpoint: a kube-vip static pod on control planes, or haproxy + keepalived on the
load-balancer hosts. An external balancer or a single control plane needs no files."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from kubeforge.model import EndpointMode, Host, RenderedFile
from kubeforge.model.images import kube_vip_image
from kubeforge.model.kubeadm_paths import ADMIN_CONF, MANIFESTS_DIR, SUPER_ADMIN_CONF
from kubeforge.render.context import ClusterContext, is_ipv6, url_host
from kubeforge.render.env import render_template

KUBE_VIP_PATH = f"{MANIFESTS_DIR}/kube-vip.yaml"
HAPROXY_PATH = "/etc/haproxy/haproxy.cfg"
# root's alone (mode 600): `level admin` can drain and re-enable servers (kubeforge.plan.endpoint.drain)
HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock"
HAPROXY_BACKEND = "kube-apiserver"
KEEPALIVED_PATH = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT_PATH = "/etc/keepalived/check-haproxy.sh"
# keepalived waits for its unicast source address (keepalived-address.conf.j2 says why)
KEEPALIVED_DROPIN_PATH = "/etc/systemd/system/keepalived.service.d/10-kubeforge-address.conf"
KEEPALIVED_INPUTS = (KEEPALIVED_PATH, KEEPALIVED_DROPIN_PATH, CHECK_SCRIPT_PATH)
BALANCER_PATHS = (HAPROXY_PATH, *KEEPALIVED_INPUTS)
ADDRESS_WAIT_S = 60
APISERVER_PORT = 6443


@dataclass(frozen=True)
class Backend:
    name: str
    target: str


def render_endpoint(ctx: ClusterContext, host: Host) -> list[RenderedFile]:
    c = ctx.cluster
    mode = c.endpoint.mode
    if mode is EndpointMode.KUBE_VIP and host.is_control_plane:
        return [_kube_vip(ctx, host)]
    if mode is EndpointMode.HAPROXY and host.is_load_balancer:
        return _haproxy_keepalived(ctx, host)
    return []


def _vip_cidr(vip: str) -> int:
    return 128 if is_ipv6(vip) else 32


def _kube_vip(ctx: ClusterContext, host: Host) -> RenderedFile:
    c = ctx.cluster
    # Since 1.29 admin.conf has no rights until kubeadm init has finished creating its RBAC, while
    # kube-vip must hold the VIP during init: the first control plane uses super-admin.conf.
    first = host.name == ctx.first_control_plane
    content = render_template(
        "endpoint/kube-vip.yaml.j2",
        c=c,
        vip=c.endpoint.host,
        port=c.endpoint.port,
        interface=c.endpoint.interface,
        vip_cidr=_vip_cidr(c.endpoint.host),
        image=kube_vip_image(c).ref,
        kubeconfig=SUPER_ADMIN_CONF if first else ADMIN_CONF,
    )
    return RenderedFile(KUBE_VIP_PATH, content, mode=0o600, source="endpoint/kube-vip.yaml.j2")


def _haproxy_keepalived(ctx: ClusterContext, host: Host) -> list[RenderedFile]:
    c = ctx.cluster
    balancers = ctx.load_balancers
    index = next(i for i, lb in enumerate(balancers) if lb.name == host.name)
    backends = [Backend(cp.name, f"{url_host(cp.internal_address)}:{APISERVER_PORT}") for cp in ctx.control_planes]
    common = {"c": c, "host": host, "port": c.endpoint.port, "vip": c.endpoint.host}
    haproxy = render_template("endpoint/haproxy.cfg.j2", control_planes=backends, admin_socket=HAPROXY_ADMIN_SOCKET,
                              backend=HAPROXY_BACKEND, **common)
    keepalived = render_template(
        "endpoint/keepalived.conf.j2",
        instance=f"{c.name.upper().replace('-', '_')}_API",
        # The first balancer in inventory order starts as master; priorities fall by host order
        # so the VIP moves back deterministically when a higher one returns.
        state="MASTER" if index == 0 else "BACKUP",
        priority=max(1, 150 - 10 * index),
        interface=c.endpoint.interface,
        virtual_router_id=c.endpoint.virtual_router_id,
        # unicast so VRRP works on networks that drop multicast
        peers=[lb.internal_address for lb in balancers if lb.name != host.name],
        vip_cidr=_vip_cidr(c.endpoint.host),
        check_script=CHECK_SCRIPT_PATH,
        **common,
    )
    check = render_template("endpoint/check-haproxy.sh.j2", **common)
    # `ip -o addr` prints the canonical form of an address; the inventory may spell it otherwise
    address = ipaddress.ip_address(host.internal_address).compressed
    dropin = render_template("endpoint/keepalived-address.conf.j2", address=address, wait_tries=ADDRESS_WAIT_S * 2,
                             **common)
    return [
        RenderedFile(HAPROXY_PATH, haproxy, source="endpoint/haproxy.cfg.j2"),
        RenderedFile(KEEPALIVED_PATH, keepalived, source="endpoint/keepalived.conf.j2"),
        RenderedFile(KEEPALIVED_DROPIN_PATH, dropin, source="endpoint/keepalived-address.conf.j2"),
        RenderedFile(CHECK_SCRIPT_PATH, check, mode=0o755, source="endpoint/check-haproxy.sh.j2"),
    ]
