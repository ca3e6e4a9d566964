"""ensure_pki: load the local store, create what is missing, re-issue only leaves that no longer fit.

Rules (ARCHITECTURE §4): CAs are created once and never regenerated behind the operator's back; a
leaf is re-issued only when its SANs no longer cover the inventory, when it is not signed by the
current CA, or when one of its two files is gone. A second run on the same inventory writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from kubeforge.model.cluster import Cluster, Host
from kubeforge.pki import crypto
from kubeforge.pki.bundle import CertPair, KeyPair, PkiBundle, PkiChange, PkiResult
from kubeforge.pki.crypto import CLIENT_AUTH, SERVER_AUTH, LeafSpec
from kubeforge.pki.store import CERT_MODE, KEY_MODE, PkiStoreError, Store, safe_component

# (item, store path without extension, common name) — names follow kubeadm's.
CAS = (
    ("etcd-ca", "etcd/ca", "etcd-ca"),
    ("kubernetes-ca", "ca", "kubernetes"),
    ("front-proxy-ca", "front-proxy-ca", "front-proxy-ca"),
)
HEALTHCHECK = ("etcd-healthcheck-client", "etcd/healthcheck-client")
APISERVER_ETCD = ("apiserver-etcd-client", "apiserver-etcd-client")
SA_KEY, SA_PUB = "sa.key", "sa.pub"


def ca_rel_key(ca_item: str) -> str:
    return next(f"{rel}.key" for item, rel, _ in CAS if item == ca_item)


def member_rel(host_name: str, kind: str) -> str:
    """Store path (no extension) of a member's ``server`` or ``peer`` certificate."""
    return f"etcd/members/{safe_component(host_name)}/{kind}"


def member_sans(host: Host) -> tuple[str, ...]:
    """What an etcd member's server and peer certificates must cover, without repeats."""
    wanted = [host.name, *host.addresses, "localhost", "127.0.0.1", "::1"]
    out: list[str] = []
    for s in wanted:
        n = crypto.normalise_san(s)
        if n not in out:
            out.append(n)
    return tuple(out)


@dataclass
class _Run:
    store: Store
    key_type: str
    ca_days: int
    leaf_days: int
    now: datetime
    create: bool  # False: load only, a missing file is an error
    changes: list[PkiChange]
    signers: dict[str, crypto.PrivateKey] = field(default_factory=dict)  # CA item -> validated key
    fresh_cas: set[str] = field(default_factory=set)  # CAs generated in this run
    renew: frozenset[str] = frozenset()  # leaf items to re-issue however well they fit (certs renew)

    def _missing(self, rel: str) -> PkiStoreError:
        return PkiStoreError(
            f"{self.store.path(rel)}: missing from the PKI store",
            hint="run `kubeforge render -i <inventory>` to create the PKI",
        )

    def _load_cert(self, rel: str) -> x509.Certificate:
        try:
            return crypto.load_cert(self.store.read(rel))
        except ValueError as exc:
            raise PkiStoreError(f"{self.store.path(rel)}: {exc}") from None

    def _load_key(self, rel: str, *, validate: bool = False) -> crypto.PrivateKey:
        try:
            return crypto.load_key(self.store.read(rel), validate=validate)
        except ValueError as exc:
            raise PkiStoreError(f"{self.store.path(rel)}: {exc}") from None

    def ca(self, item: str, rel: str, cn: str) -> tuple[CertPair, crypto.PrivateKey]:
        crt, key = f"{rel}.crt", f"{rel}.key"
        has_crt, has_key = self.store.exists(crt), self.store.exists(key)
        if not has_crt and not has_key:
            if not self.create:
                raise self._missing(crt)
            k = crypto.generate_key(self.key_type)
            cert = crypto.issue_ca(k, cn, days=self.ca_days, now=self.now)
            key_pem, cert_pem = crypto.key_to_pem(k), crypto.cert_to_pem(cert)
            self.store.write_many({key: (key_pem, KEY_MODE), crt: (cert_pem, CERT_MODE)})
            self.changes.append(PkiChange(item, "created"))
            self.fresh_cas.add(item)
            return CertPair(cert_pem, key_pem, cert, self.store.path(crt)), k
        if not has_key or not has_crt:
            present, absent = (crt, key) if has_crt else (key, crt)
            raise PkiStoreError(
                f"{self.store.path(absent)}: missing, but {self.store.path(present)} exists; "
                f"kubeforge never regenerates the {item} on its own",
                hint="restore the file from a backup; or, to start a new CA on purpose, remove both "
                "files (every certificate it signed is then re-issued and must be redeployed)",
            )
        cert, k = self._load_cert(crt), self._load_key(key)
        if not crypto.same_public_key(cert, k):
            raise PkiStoreError(f"{self.store.path(key)}: does not belong to {self.store.path(crt)}")
        bc = _basic_constraints(cert)
        if bc is None or not bc.ca:
            raise PkiStoreError(f"{self.store.path(crt)}: is not a CA certificate")
        self.changes.append(PkiChange(item, "unchanged"))
        return CertPair(self.store.read(crt), self.store.read(key), cert, self.store.path(crt)), k

    def leaf(
        self, item: str, rel: str, spec: LeafSpec, ca: CertPair, ca_key: crypto.PrivateKey, ca_item: str
    ) -> CertPair:
        crt, key = f"{rel}.crt", f"{rel}.key"
        has_crt, has_key = self.store.exists(crt), self.store.exists(key)
        reason = ""
        if has_crt and has_key:
            cert, k = self._load_cert(crt), self._load_key(key)
            if not crypto.same_public_key(cert, k):
                raise PkiStoreError(f"{self.store.path(key)}: does not belong to {self.store.path(crt)}")
            pair = CertPair(self.store.read(crt), self.store.read(key), cert, self.store.path(crt))
            if not self.create:
                return pair  # reading for a report: what is on disk is what is deployed
            missing = [s for s in spec.sans if s not in crypto.cert_sans(cert)]
            if not crypto.signed_by(cert, ca.cert):
                reason = f"not signed by the current {ca_item}"
            elif item in self.renew:
                reason = f"renewed (was valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC)"
            elif missing:
                reason = "SANs no longer cover the inventory (missing " + ", ".join(missing) + ")"
            else:
                self.changes.append(PkiChange(item, "unchanged"))
                return pair
        elif not self.create:
            raise self._missing(key if has_crt else crt)
        elif has_crt or has_key:
            reason = f"{self.store.path(key if has_crt else crt).name} was missing"
        if ca_item not in self.signers:
            # Fully checked before it signs anything: a damaged CA key must not mint certificates.
            self.signers[ca_item] = (
                ca_key if ca_item in self.fresh_cas else self._load_key(ca_rel_key(ca_item), validate=True)
            )
        k = crypto.generate_key(self.key_type)
        cert = crypto.issue_leaf(spec, k, ca.cert, self.signers[ca_item], days=self.leaf_days, now=self.now)
        key_pem, cert_pem = crypto.key_to_pem(k), crypto.cert_to_pem(cert)
        self.store.write_many({key: (key_pem, KEY_MODE), crt: (cert_pem, CERT_MODE)})
        self.changes.append(PkiChange(item, "reissued" if reason else "created", reason))
        return CertPair(cert_pem, key_pem, cert, self.store.path(crt))

    def service_account(self) -> KeyPair:
        has_key, has_pub = self.store.exists(SA_KEY), self.store.exists(SA_PUB)
        if has_key:
            k = self._load_key(SA_KEY)
            pub = crypto.public_key_to_pem(k)
            if has_pub and self.store.read(SA_PUB) == pub:
                self.changes.append(PkiChange("sa", "unchanged"))
                return KeyPair(self.store.read(SA_KEY), pub, self.store.path(SA_KEY))
            if not self.create and not has_pub:
                raise self._missing(SA_PUB)
            if not self.create:
                raise PkiStoreError(f"{self.store.path(SA_PUB)}: does not match {self.store.path(SA_KEY)}")
            # sa.pub is derived from sa.key, so rewriting it from the key loses nothing.
            self.store.write_many({SA_PUB: (pub, CERT_MODE)})
            self.changes.append(PkiChange("sa", "reissued", "sa.pub rewritten from sa.key"))
            return KeyPair(self.store.read(SA_KEY), pub, self.store.path(SA_KEY))
        if has_pub:
            raise PkiStoreError(
                f"{self.store.path(SA_KEY)}: missing, but {self.store.path(SA_PUB)} exists; a new "
                "service-account key would invalidate every service-account token in the cluster",
                hint="restore sa.key from a backup, or remove sa.pub to create a new pair on purpose",
            )
        if not self.create:
            raise self._missing(SA_KEY)
        k = crypto.generate_key(self.key_type)
        key_pem, pub = crypto.key_to_pem(k), crypto.public_key_to_pem(k)
        self.store.write_many({SA_KEY: (key_pem, KEY_MODE), SA_PUB: (pub, CERT_MODE)})
        self.changes.append(PkiChange("sa", "created"))
        return KeyPair(key_pem, pub, self.store.path(SA_KEY))


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _build(cluster: Cluster, *, now: datetime | None, create: bool, renew: frozenset[str] = frozenset(),
           leaf_days: int | None = None) -> PkiResult:
    if cluster.pki.key_type not in crypto.KEY_TYPES:
        raise PkiStoreError(
            f"pki.keyType {cluster.pki.key_type!r} is not supported (use {', '.join(crypto.KEY_TYPES)})"
        )
    store = Store(cluster.pki_dir)
    if create:
        from kubeforge.pki.ca_rotation import refuse_while_rotating

        refuse_while_rotating(cluster)  # the store's CA is about to change: nothing else may issue from it
        store.ensure_dir()
    elif not store.root.is_dir():
        raise PkiStoreError(
            f"{store.root}: no PKI store for cluster {cluster.name!r}",
            hint=f"run `kubeforge render -i {cluster.source}` to create it",
        )
    run = _Run(
        store=store,
        key_type=cluster.pki.key_type,
        ca_days=cluster.pki.ca_days,
        leaf_days=cluster.pki.leaf_days if leaf_days is None else leaf_days,
        now=now or datetime.now(UTC),
        create=create,
        changes=[],
        renew=renew,
    )
    unknown = renew - set(leaf_items(cluster))
    if unknown:
        raise ValueError(f"not leaf items of this PKI: {', '.join(sorted(unknown))}")
    (etcd_ca, etcd_key), (kube_ca, _), (fp_ca, _) = (run.ca(*spec) for spec in CAS)
    sa = run.service_account()
    leaves = _etcd_leaves(run, cluster, etcd_ca, etcd_key)
    servers = {h.name: leaves[f"etcd-server/{h.name}"] for h in cluster.etcd_members}
    peers = {h.name: leaves[f"etcd-peer/{h.name}"] for h in cluster.etcd_members}
    health, api = leaves[HEALTHCHECK[0]], leaves[APISERVER_ETCD[0]]
    bundle = PkiBundle(
        pki_dir=store.root,
        etcd_ca=etcd_ca,
        kube_ca=kube_ca,
        front_proxy_ca=fp_ca,
        sa=sa,
        etcd_healthcheck_client=health,
        apiserver_etcd_client=api,
        etcd_servers=servers,
        etcd_peers=peers,
    )
    return PkiResult(bundle=bundle, changes=run.changes)


def etcd_leaf_specs(cluster: Cluster) -> list[tuple[str, str, LeafSpec]]:
    """Every leaf the etcd CA signs: (item, store path without extension, what it must say)."""
    both = (SERVER_AUTH, CLIENT_AUTH)  # members dial each other, so each cert is also a client
    out: list[tuple[str, str, LeafSpec]] = []
    for host in cluster.etcd_members:
        spec = LeafSpec(cn=host.name, usages=both, sans=member_sans(host))
        out.append((f"etcd-server/{host.name}", member_rel(host.name, "server"), spec))
        out.append((f"etcd-peer/{host.name}", member_rel(host.name, "peer"), spec))
    out.append((*HEALTHCHECK, LeafSpec(cn="kube-etcd-healthcheck-client", usages=(CLIENT_AUTH,))))
    out.append((*APISERVER_ETCD, LeafSpec(cn="kube-apiserver-etcd-client", org="system:masters",
                                          usages=(CLIENT_AUTH,))))
    return out


def _etcd_leaves(run: _Run, cluster: Cluster, ca: CertPair, ca_key: crypto.PrivateKey) -> dict[str, CertPair]:
    return {item: run.leaf(item, rel, spec, ca, ca_key, "etcd-ca") for item, rel, spec in etcd_leaf_specs(cluster)}


def ensure_etcd_leaves(cluster: Cluster, root: Path, ca: CertPair, ca_key: crypto.PrivateKey, *,
                       now: datetime | None = None) -> dict[str, CertPair]:
    """The etcd leaves under ``root`` (a store of their own: a CA rotation's next set), issued from
    ``ca`` by the same rules as the main store's: kept while they fit and are signed by ``ca``."""
    run = _Run(store=Store(root), key_type=cluster.pki.key_type, ca_days=cluster.pki.ca_days,
               leaf_days=cluster.pki.leaf_days, now=now or datetime.now(UTC), create=True, changes=[],
               signers={"etcd-ca": ca_key})
    return _etcd_leaves(run, cluster, ca, ca_key)


def front_proxy_client_rel(host_name: str) -> str:
    """Where a front-proxy CA rotation keeps a control plane's new client pair (no extension)."""
    return f"front-proxy-client/{safe_component(host_name)}"


def ensure_front_proxy_clients(cluster: Cluster, root: Path, ca: CertPair, ca_key: crypto.PrivateKey, *,
                               now: datetime | None = None) -> dict[str, CertPair]:
    """Per control plane, the client certificate its API server shows aggregated API servers
    (``--proxy-client-cert-file``, kubeadm's front-proxy-client: that CN, clientAuth), issued under
    ``root`` from ``ca`` by the same rules as the store's leaves."""
    run = _Run(store=Store(root), key_type=cluster.pki.key_type, ca_days=cluster.pki.ca_days,
               leaf_days=cluster.pki.leaf_days, now=now or datetime.now(UTC), create=True, changes=[],
               signers={"front-proxy-ca": ca_key})
    spec = LeafSpec(cn="front-proxy-client", usages=(CLIENT_AUTH,))
    return {cp.name: run.leaf(f"front-proxy-client/{cp.name}", front_proxy_client_rel(cp.name), spec, ca, ca_key,
                              "front-proxy-ca")
            for cp in cluster.control_planes}


# What kubeadm issues from the cluster CA on each control plane, re-issued by a rotation of that CA:
# (item, CN, O, usages). The kubeconfigs' users keep kubeadm's subjects (admin.conf's group is
# kubeadm:cluster-admins since 1.29, super-admin.conf's system:masters: kubernetes.io/docs/reference/
# setup-tools/kubeadm/implementation-details).
CLUSTER_CA_CLIENTS = (
    ("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "kubeadm:cluster-admins"),
    ("admin.conf", "kubernetes-admin", "kubeadm:cluster-admins"),
    ("super-admin.conf", "kubernetes-super-admin", "system:masters"),
    ("controller-manager.conf", "system:kube-controller-manager", None),
    ("scheduler.conf", "system:kube-scheduler", None),
)


def cluster_leaf_rel(item: str, host_name: str) -> str:
    """Where a kubernetes CA rotation keeps a host's new leaf (no extension): ``<item>/<host>``."""
    return f"{safe_component(item)}/{safe_component(host_name)}"


def ensure_cluster_leaves(cluster: Cluster, root: Path, ca: CertPair, ca_key: crypto.PrivateKey, *,
                          apiserver_sans: Mapping[str, Sequence[str]], kubelets: Sequence[str],
                          subjects: Mapping[str, tuple[str, str | None]] | None = None,
                          now: datetime | None = None) -> dict[str, CertPair]:
    """The leaves a kubernetes CA rotation places, under ``root`` from ``ca``, keyed ``<item>/<host>``:
    per control plane in ``apiserver_sans`` its API server serving certificate (kube-apiserver,
    serverAuth, the SANs given: those of the certificate kubeadm issued there), its kubelet client
    and the client certificate of each kubeconfig kubeadm writes there; per host the kubelet's client
    certificate (``system:node:<name>`` in ``system:nodes``, as the TLS bootstrap has it signed) for
    each node in ``kubelets``. ``subjects``: per ``<item>/<host>``, the (CN, O) of the certificate
    kubeadm issued there, kept instead of this version's defaults (CLUSTER_CA_CLIENTS).
    Kept while they fit and are signed by ``ca``, like the store's leaves."""
    run = _Run(store=Store(root), key_type=cluster.pki.key_type, ca_days=cluster.pki.ca_days,
               leaf_days=cluster.pki.leaf_days, now=now or datetime.now(UTC), create=True, changes=[],
               signers={"kubernetes-ca": ca_key})
    out: dict[str, CertPair] = {}

    def leaf(item: str, host_name: str, spec: LeafSpec) -> None:
        key = f"{item}/{host_name}"
        out[key] = run.leaf(key, cluster_leaf_rel(item, host_name), spec, ca, ca_key, "kubernetes-ca")

    for cp in cluster.control_planes:
        if cp.name not in apiserver_sans:
            continue
        sans = tuple(crypto.normalise_san(s) for s in apiserver_sans[cp.name])
        leaf("apiserver", cp.name, LeafSpec(cn="kube-apiserver", usages=(SERVER_AUTH,), sans=sans))
        for item, cn, org in CLUSTER_CA_CLIENTS:
            cn, org = (subjects or {}).get(f"{item}/{cp.name}", (cn, org))
            leaf(item, cp.name, LeafSpec(cn=cn, org=org, usages=(CLIENT_AUTH,)))
    for name in kubelets:
        leaf("kubelet", name, LeafSpec(cn=f"system:node:{name}", org="system:nodes", usages=(CLIENT_AUTH,)))
    return out


def leaf_items(cluster: Cluster) -> list[str]:
    """The store's leaf items for this inventory (what ``renew`` may name)."""
    return [item for item, _, _ in etcd_leaf_specs(cluster)]


def ensure_pki(cluster: Cluster, *, now: datetime | None = None, renew: frozenset[str] = frozenset(),
               leaf_days: int | None = None) -> PkiResult:
    """Load ``cluster.pki_dir``, create what is missing, re-issue leaves that no longer fit.

    ``renew``: leaf items (see ``leaf_items``) re-issued even though they fit, with a new key, from
    the CA in the store (``kubeforge certs renew``). ``leaf_days``: the validity of leaves issued by
    this call instead of the inventory's ``pki.leafDays`` (tests issue leaves that expire soon).
    """
    return _build(cluster, now=now, create=True, renew=frozenset(renew), leaf_days=leaf_days)


def load_pki(cluster: Cluster) -> PkiBundle:
    """Read the existing store without writing anything; a missing file is an error that names it."""
    return _build(cluster, now=None, create=False).bundle
