"""What the PKI store hands to renderers and planners: the certificates and keys, never printable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography import x509

from kubeforge.pki.crypto import spki_sha256


@dataclass(frozen=True, eq=False)
class CertPair:
    """A certificate and its private key. ``repr``/``str`` name the certificate, never the key."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    cert: x509.Certificate = field(repr=False)
    path: Path | None = None  # the certificate's file in the local store

    def __repr__(self) -> str:
        return (
            f"CertPair(subject={self.cert.subject.rfc4514_string()!r}, "
            f"not_after={self.cert.not_valid_after_utc.isoformat()}, key=***)"
        )

    __str__ = __repr__


@dataclass(frozen=True, eq=False)
class KeyPair:
    """The service-account signing key pair (sa.key / sa.pub)."""

    private_pem: bytes = field(repr=False)
    public_pem: bytes
    path: Path | None = None

    def __repr__(self) -> str:
        return f"KeyPair(public={len(self.public_pem)} bytes, private=***)"

    __str__ = __repr__


@dataclass(frozen=True)
class PkiBundle:
    pki_dir: Path
    etcd_ca: CertPair
    kube_ca: CertPair
    front_proxy_ca: CertPair
    sa: KeyPair
    etcd_healthcheck_client: CertPair
    apiserver_etcd_client: CertPair
    etcd_servers: Mapping[str, CertPair] = field(default_factory=dict)
    etcd_peers: Mapping[str, CertPair] = field(default_factory=dict)

    def etcd_server(self, host_name: str) -> CertPair:
        try:
            return self.etcd_servers[host_name]
        except KeyError:
            raise KeyError(f"{host_name} is not an etcd member of this PKI") from None

    def etcd_peer(self, host_name: str) -> CertPair:
        try:
            return self.etcd_peers[host_name]
        except KeyError:
            raise KeyError(f"{host_name} is not an etcd member of this PKI") from None

    @property
    def kube_ca_cert_hash(self) -> str:
        """``sha256:<hex>`` for ``kubeadm join --discovery-token-ca-cert-hash``."""
        return spki_sha256(self.kube_ca.cert)

    def certificates(self) -> list[tuple[str, CertPair]]:
        """Every certificate with its item name, CAs first, in a stable order."""
        out = [
            ("etcd-ca", self.etcd_ca),
            ("kubernetes-ca", self.kube_ca),
            ("front-proxy-ca", self.front_proxy_ca),
        ]
        for name in self.etcd_servers:
            out.append((f"etcd-server/{name}", self.etcd_servers[name]))
            out.append((f"etcd-peer/{name}", self.etcd_peers[name]))
        out.append(("etcd-healthcheck-client", self.etcd_healthcheck_client))
        out.append(("apiserver-etcd-client", self.apiserver_etcd_client))
        return out


Action = Literal["created", "reissued", "unchanged"]


@dataclass(frozen=True)
class PkiChange:
    item: str  # "etcd-ca", "etcd-server/etcd-2", "sa", ...
    action: Action
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.action} {self.item}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class PkiResult:
    bundle: PkiBundle
    changes: list[PkiChange]

    @property
    def changed(self) -> list[PkiChange]:
        return [c for c in self.changes if c.action != "unchanged"]
