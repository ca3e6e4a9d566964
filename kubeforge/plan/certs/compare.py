"""Who owns each certificate found on a host, whether it is the one the local store holds, and what
expires: the report of ``certs check`` and the input of ``certs renew``'s plan."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from kubeforge.model.cluster import Cluster
from kubeforge.pki.bundle import PkiBundle
from kubeforge.pki.hostcerts import KUBELET_PKI, HostCert, fingerprint
from kubeforge.pki.layout import ETCD_PKI, KUBE_PKI, host_files

# What kubeadm issued and renews itself (`kubeadm certs renew <name>`), by file.
KUBEADM_OWNED = {
    f"{KUBE_PKI}/apiserver.crt": "apiserver",
    f"{KUBE_PKI}/apiserver-kubelet-client.crt": "apiserver-kubelet-client",
    f"{KUBE_PKI}/front-proxy-client.crt": "front-proxy-client",
    f"{KUBE_PKI}/apiserver-etcd-client.crt": "apiserver-etcd-client",  # stacked etcd only
    f"{KUBE_PKI}/etcd/server.crt": "etcd-server",
    f"{KUBE_PKI}/etcd/peer.crt": "etcd-peer",
    f"{KUBE_PKI}/etcd/healthcheck-client.crt": "etcd-healthcheck-client",
    "/etc/kubernetes/admin.conf": "admin.conf",
    "/etc/kubernetes/super-admin.conf": "super-admin.conf",
    "/etc/kubernetes/controller-manager.conf": "controller-manager.conf",
    "/etc/kubernetes/scheduler.conf": "scheduler.conf",
}
CA_FILES = (f"{KUBE_PKI}/ca.crt", f"{KUBE_PKI}/front-proxy-ca.crt", f"{KUBE_PKI}/etcd/ca.crt", f"{ETCD_PKI}/ca.crt")


@dataclass(frozen=True)
class Owner:
    """``store``: a leaf kubeforge issues from its local store (``item``, re-issued by kubeforge);
    ``kubeadm``: kubeadm's (``item`` is the name `kubeadm certs renew` takes); ``ca``: a CA (renewed
    only by a CA rotation); ``kubelet``: the kubelet's own certificates; ``unknown``: none of these."""

    kind: str
    item: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.item}" if self.item else self.kind


@dataclass(frozen=True)
class Finding:
    cert: HostCert
    owner: Owner
    store: str  # "same" | "differs" | "" (not a store file)
    expiring: bool
    store_not_after: datetime | None = None  # the store's copy, when it differs

    def to_json(self, now: datetime) -> dict[str, object]:
        d = self.cert.to_json(now) | {"owner": str(self.owner), "expiring": self.expiring}
        if self.store:
            d["store"] = self.store
        if self.store_not_after is not None:
            d["storeNotAfter"] = self.store_not_after.isoformat()
        return d


@dataclass(frozen=True)
class HostReport:
    findings: tuple[Finding, ...]
    missing: tuple[tuple[str, str], ...] = ()  # (host, path): the store puts it there, the host lacks it
    unreachable: tuple[str, ...] = ()
    within_days: int = 30

    @property
    def expiring(self) -> list[Finding]:
        return [f for f in self.findings if f.expiring]

    @property
    def differences(self) -> list[str]:
        out = [f"{f.cert.host}: {f.cert.path} is not the certificate in the local store ({f.owner.item})"
               for f in self.findings if f.store == "differs"]
        out += [f"{host}: {path} is missing (the local store has it for this host)" for host, path in self.missing]
        out += [f"{f.cert.host}: {f.cert.path}: {f.cert.error}" for f in self.findings if f.cert.error]
        return out


def store_files(cluster: Cluster, bundle: PkiBundle, host) -> dict[str, tuple[str, str]]:
    """``{path: (store item, sha256)}`` of the certificates kubeforge puts on ``host`` from its store."""
    by_pem = {pair.cert_pem: (name, fingerprint(pair.cert)) for name, pair in bundle.certificates()}
    out = {}
    for f in host_files(cluster, bundle, host):
        if f.path.endswith(".crt") and f.content in by_pem:
            out[f.path] = by_pem[f.content]
    return out


def owner_of(path: str, from_store: Mapping[str, tuple[str, str]]) -> Owner:
    if path in CA_FILES:
        return Owner("ca", from_store[path][0] if path in from_store else "")
    if path in from_store:
        return Owner("store", from_store[path][0])
    if path in KUBEADM_OWNED:
        return Owner("kubeadm", KUBEADM_OWNED[path])
    if path.startswith(KUBELET_PKI + "/"):
        return Owner("kubelet")
    return Owner("unknown")


def compare(cluster: Cluster, bundle: PkiBundle | None, found: Mapping[str, Iterable[HostCert]], *, within_days: int,
            now: datetime, unreachable: Iterable[str] = ()) -> HostReport:
    """``found``: host name -> what the probe read there (hosts that could not be read are left out
    and named in ``unreachable``). ``bundle`` None: there is no local store to compare with."""
    stored = {name: pair.cert for name, pair in bundle.certificates()} if bundle is not None else {}
    findings: list[Finding] = []
    missing: list[tuple[str, str]] = []
    for host in cluster.hosts:
        if host.name not in found:
            continue
        from_store = store_files(cluster, bundle, host) if bundle is not None else {}
        seen = set()
        for c in found[host.name]:
            seen.add(c.path)
            owner = owner_of(c.path, from_store)
            state, store_after = "", None
            if c.path in from_store:
                item, sha = from_store[c.path]
                state = "same" if c.sha256 == sha else "differs"
                if state == "differs":
                    store_after = stored[item].not_valid_after_utc
            expiring = not c.error and c.days_left(now) <= within_days
            findings.append(Finding(c, owner, state, expiring, store_after))
        missing += [(host.name, p) for p in sorted(from_store) if p not in seen]
    return HostReport(tuple(findings), tuple(missing), tuple(sorted(unreachable)), within_days)


def store_leaves_expiring(bundle: PkiBundle, *, within_days: int, now: datetime) -> list[str]:
    cas = {"etcd-ca", "kubernetes-ca", "front-proxy-ca"}
    return [name for name, pair in bundle.certificates()
            if name not in cas and (pair.cert.not_valid_after_utc - now).days <= within_days]


__all__ = ["CA_FILES", "KUBEADM_OWNED", "Finding", "HostReport", "Owner", "compare",
           "store_files", "store_leaves_expiring"]
