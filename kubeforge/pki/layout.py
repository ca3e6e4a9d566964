"""Which PKI files land on which host, in kubeadm's layout (ARCHITECTURE §4)."""

from __future__ import annotations

from kubeforge.model.cluster import Cluster, EtcdTopology, Host
from kubeforge.model.files import RenderedFile
from kubeforge.model.kubeadm_paths import ETCD_PKI, KUBE_PKI
from kubeforge.pki.bundle import CertPair, PkiBundle

SOURCE = "pki"


def _cert(path: str, pem: bytes, owner: str = "root", group: str = "root") -> RenderedFile:
    return RenderedFile(path=path, content=pem, mode=0o644, owner=owner, group=group, source=SOURCE)


def _key(path: str, pem: bytes, owner: str = "root", group: str = "root") -> RenderedFile:
    return RenderedFile(
        path=path, content=pem, mode=0o600, owner=owner, group=group, secret=True, source=SOURCE
    )


def _pair(base: str, pair: CertPair, owner: str = "root", group: str = "root") -> list[RenderedFile]:
    # Certificates are public (0644, root); only the key needs the service user as owner.
    return [_cert(f"{base}.crt", pair.cert_pem), _key(f"{base}.key", pair.key_pem, owner, group)]


def host_files(cluster: Cluster, bundle: PkiBundle, host: Host) -> list[RenderedFile]:
    """The PKI files for ``host``, sorted by path. Workers get none: they trust the cluster CA through
    kubeadm's token discovery (pinned by ``bundle.kube_ca_cert_hash``)."""
    files: list[RenderedFile] = []
    external = cluster.etcd.topology is EtcdTopology.EXTERNAL
    if host.is_control_plane:
        files += _pair(f"{KUBE_PKI}/ca", bundle.kube_ca)
        files += _pair(f"{KUBE_PKI}/front-proxy-ca", bundle.front_proxy_ca)
        files.append(_key(f"{KUBE_PKI}/sa.key", bundle.sa.private_pem))
        files.append(_cert(f"{KUBE_PKI}/sa.pub", bundle.sa.public_pem))
        if external:
            files.append(_cert(f"{KUBE_PKI}/etcd/ca.crt", bundle.etcd_ca.cert_pem))
            files += _pair(f"{KUBE_PKI}/apiserver-etcd-client", bundle.apiserver_etcd_client)
        else:
            # Stacked: kubeadm issues each member's certificates itself from this CA.
            files += _pair(f"{KUBE_PKI}/etcd/ca", bundle.etcd_ca)
    if external and any(m.name == host.name for m in cluster.etcd_members):
        # The etcd service runs as user etcd (Debian's package), so it must own its keys.
        files.append(_cert(f"{ETCD_PKI}/ca.crt", bundle.etcd_ca.cert_pem))
        files += _pair(f"{ETCD_PKI}/server", bundle.etcd_server(host.name), "etcd", "etcd")
        files += _pair(f"{ETCD_PKI}/peer", bundle.etcd_peer(host.name), "etcd", "etcd")
        files += _pair(f"{ETCD_PKI}/healthcheck-client", bundle.etcd_healthcheck_client, "etcd", "etcd")
    return sorted(files, key=lambda f: f.path)


def front_proxy_files(ca: CertPair, client: CertPair | None) -> list[RenderedFile]:
    """A control plane's front-proxy CA pair (``--requestheader-client-ca-file``; kubeadm signs the
    client with its key) and, when given, the API server's front-proxy client pair, sorted by path."""
    files = _pair(f"{KUBE_PKI}/front-proxy-ca", ca)
    if client is not None:
        files += _pair(f"{KUBE_PKI}/front-proxy-client", client)
    return sorted(files, key=lambda f: f.path)
