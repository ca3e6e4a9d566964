"""containerd's per-registry configuration: /etc/containerd/certs.d/<registry>/hosts.toml (mirrors
as ordered endpoints, the CA, basic-auth credentials as a header) and the CA beside it.

containerd's CRI plugin reads these because config.toml sets ``config_path`` to CERTS_DIR. A
hosts.toml that carries credentials is a secret file (0600, never printed); the others are not.
Rendering them needs the RegistryAccess read by kubeforge.pki.registry when the inventory names
credentials or a CA; without it they are left out (as kubeadm's files are without the secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from kubeforge.model import Host, RenderedFile
from kubeforge.model.images import needs_registry_access
from kubeforge.render.context import ClusterContext
from kubeforge.render.env import render_template

CERTS_DIR = "/etc/containerd/certs.d"
# Docker Hub's registry answers at registry-1.docker.io, not at the name images use.
_SERVERS = {"docker.io": "https://registry-1.docker.io"}


@dataclass(frozen=True)
class _Endpoint:
    url: str
    auth: str | None


def hosts_toml_path(registry: str) -> str:
    return f"{CERTS_DIR}/{registry}/hosts.toml"


def render_registries(ctx: ClusterContext, host: Host) -> list[RenderedFile]:
    """Every configured registry's hosts.toml (and CA) on Kubernetes nodes; [] elsewhere."""
    if not (host.is_control_plane or host.is_worker):
        return []
    return list(ctx.shared(("registries",), lambda: _render(ctx)))


def _render(ctx: ClusterContext) -> list[RenderedFile]:
    c = ctx.cluster
    images = c.images
    access = ctx.registry_access
    if access is None and needs_registry_access(c):
        return []  # like kubeadm's files without secrets: left out until the credentials and CA are read
    files: list[RenderedFile] = []
    mirrors = dict(images.mirrors)
    for registry in images.configured_registries:
        ca_path = None
        if access is not None and access.ca_pem:
            ca_path = f"{CERTS_DIR}/{registry}/ca.crt"
            files.append(RenderedFile(ca_path, access.ca_pem, source="images.ca"))
        endpoints = [_Endpoint(u, _auth(access, urlparse(u).netloc)) for u in mirrors.get(registry, ())]
        server = _SERVERS.get(registry, f"https://{registry}")
        server_auth = _auth(access, registry)
        content = render_template("host/hosts.toml.j2", c=c, registry=registry, server=server, ca=ca_path,
                                  server_auth=server_auth, endpoints=endpoints)
        secret = bool(server_auth) or any(e.auth for e in endpoints)
        files.append(RenderedFile(hosts_toml_path(registry), content, mode=0o600 if secret else 0o644,
                                  secret=secret, source="host/hosts.toml.j2"))
    return files


def _auth(access, registry: str) -> str | None:
    secret = access.auth_for(registry) if access else None
    return secret.reveal() if secret else None
