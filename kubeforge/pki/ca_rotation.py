"""A CA rotation's durable state in the local store (``kubeforge certs rotate-ca``).

The next CA and every leaf it signs live beside the main store, in ``pki/rotation/<ca>-ca/`` laid out
like the store itself (etcd: ``etcd/ca.*``, ``etcd/members/<host>/…``, ``apiserver-etcd-client.*``;
front-proxy: ``front-proxy-ca.*`` and ``front-proxy-client/<control plane>.*``, the client
certificate each API server shows aggregated API servers, which kubeadm issues at init and join and
this rotation re-issues from the new CA; kubernetes: ``ca.*`` and ``<item>/<node>.*`` for what kubeadm
issued from the cluster CA on each node — the API server's serving certificate and kubelet client,
each kubeconfig's client, the kubelet's client), with ``state.json`` saying how many of the
rotation's three phases are done:

    1 both CAs trusted everywhere  ->  2 every leaf re-issued from the new CA  ->  3 the old CA dropped

The new CA is written (fsync'd, renamed) before anything is planned and is never generated again
while this directory exists, so a resumed or repeated run pushes the very same files. The main
store keeps the old CA and leaves until phase 3 is done; then the next set is copied over it and the
directory goes (front-proxy and kubernetes: the CA alone; the leaves stay kubeadm's on the hosts,
renewed there by ``kubeadm certs renew`` from the CA on disk). While one rotation's directory exists,
nothing else may issue from the store, nor may another CA's rotation begin (``refuse_while_rotating``):
``up`` or ``certs renew`` would put the old CA alone back on hosts that need both.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from kubeforge.errors import SafetyRefusal
from kubeforge.model.cluster import Cluster
from kubeforge.pki import crypto
from kubeforge.pki.bundle import CertPair, PkiBundle
from kubeforge.pki.store import CERT_MODE, KEY_MODE, PkiStoreError, Store

ROTATION = "rotation"
ETCD_ROTATION = "etcd-ca"
STATE = "state.json"
CA_REL = "etcd/ca"
# --ca -> (its rotation directory under pki/rotation/, its store path without extension, its CN)
ROTATED = {"etcd": (ETCD_ROTATION, CA_REL, "etcd-ca"),
           "front-proxy": ("front-proxy-ca", "front-proxy-ca", "front-proxy-ca"),
           "kubernetes": ("kubernetes-ca", "ca", "kubernetes")}
PHASES = 3
# What each phase leaves behind, for messages ("2 of 3 phases done: every leaf re-issued ...").
PHASE_DONE = ("nothing changed on the hosts yet", "both CAs trusted everywhere",
              "every leaf re-issued from the new CA", "the old CA dropped")


class RotationInProgress(SafetyRefusal):
    """The store's CA is being rotated: only ``certs rotate-ca`` may change the store until it ends."""


@dataclass(frozen=True)
class RotationState:
    ca: str
    phases_done: int
    old_sha256: str  # of the old CA certificate (DER): the main store's until the rotation ends
    new_sha256: str
    started: str

    def to_json(self) -> dict[str, object]:
        return {"ca": self.ca, "phasesDone": self.phases_done, "oldSha256": self.old_sha256,
                "newSha256": self.new_sha256, "started": self.started}


def ca_for_phase(old: CertPair, new: CertPair, phase: int) -> CertPair:
    """A CA file with its key once ``phase`` (1-3) is done, where the key is that of the first CA in
    the file (kubeadm signs with it): both CAs, old first (the old key); both, new first (the new
    key); the new CA alone."""
    if phase == 1:
        return replace(old, cert_pem=old.cert_pem + new.cert_pem)
    if phase == 2:
        return replace(new, cert_pem=new.cert_pem + old.cert_pem)
    return new


@dataclass(frozen=True)
class FrontProxyRotation:
    """The old bundle (the main store), the new front-proxy CA, each control plane's new client
    certificate, and the state. The CA file and its key go together: the key is that of the CA
    first in the file, the one kubeadm signs with (``kubeadm certs renew front-proxy-client`` in
    the middle of a rotation signs with a CA both sides trust)."""

    state: RotationState
    old: PkiBundle
    new_ca: CertPair
    clients: Mapping[str, CertPair]

    def ca_for_phase(self, phase: int) -> CertPair:
        """The front-proxy-ca pair the control planes hold once ``phase`` (1-3) is done: both CAs
        (old first, the old key), both CAs (new first, the new key), the new CA alone."""
        return ca_for_phase(self.old.front_proxy_ca, self.new_ca, phase)

    def client_for_phase(self, phase: int, host_name: str) -> CertPair | None:
        """The front-proxy client pair pushed to ``host_name`` in ``phase``: none in phase 1 (kubeadm's,
        from the old CA, stays), the new CA's from phase 2 on."""
        return None if phase == 1 else self.clients[host_name]


@dataclass(frozen=True)
class ClusterRotation:
    """The old bundle (the main store), the new cluster CA (kubeadm's ``kubernetes``), the leaves it
    signs (``<item>/<host>``: ensure.ensure_cluster_leaves), and the state. As with the front-proxy
    CA, the CA file and its key go together: the key is that of the CA first in the file, the one
    kubeadm and the controller manager's CSR signer sign with."""

    state: RotationState
    old: PkiBundle
    new_ca: CertPair
    leaves: Mapping[str, CertPair]

    def ca_for_phase(self, phase: int) -> CertPair:
        """The ca.crt/ca.key pair a control plane holds once ``phase`` (1-3) is done: both CAs (old
        first, the old key), both CAs (new first, the new key), the new CA alone."""
        return ca_for_phase(self.old.kube_ca, self.new_ca, phase)

    def leaf(self, item: str, host_name: str) -> CertPair:
        return self.leaves[f"{item}/{host_name}"]


@dataclass(frozen=True)
class EtcdRotation:
    """The old bundle (the main store), the next one (new CA and leaves), and the state."""

    state: RotationState
    old: PkiBundle
    new: PkiBundle

    @property
    def trust_both(self) -> bytes:
        """The CA file of phases 1 and 2: the old CA, then the new one."""
        return self.old.etcd_ca.cert_pem + self.new.etcd_ca.cert_pem

    def bundle_for_phase(self, phase: int) -> PkiBundle:
        """What the hosts hold once ``phase`` (1-3) is done: old leaves trusting both, new leaves
        trusting both, new leaves trusting the new CA alone."""
        if phase == 3:
            return self.new
        base = self.old if phase == 1 else self.new
        return replace(base, etcd_ca=replace(base.etcd_ca, cert_pem=self.trust_both))


def rotation_dir(cluster: Cluster, ca: str = "etcd") -> Path:
    return cluster.pki_dir / ROTATION / ROTATED[ca][0]


def cert_sha256(cert) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def read_state(cluster: Cluster, ca: str = "etcd") -> RotationState | None:
    path = rotation_dir(cluster, ca) / STATE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        return RotationState(d["ca"], int(d["phasesDone"]), d["oldSha256"], d["newSha256"], d["started"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PkiStoreError(f"{path}: not a rotation state kubeforge wrote ({exc})",
                            hint="restore it from a backup of the store; never delete it during a rotation") from None


def refuse_while_rotating(cluster: Cluster, *, but: str | None = None) -> None:
    """Nothing but the rotation under way (``but``: the CA being rotated by the caller) may issue
    from the store while it runs (see the module doc)."""
    ca = next((c for c in ROTATED if c != but and rotation_dir(cluster, c).is_dir()), None)
    if ca is None:
        return
    state = read_state(cluster, ca)
    done = state.phases_done if state is not None else 0
    raise RotationInProgress(
        f"a rotation of the {ca} CA is in progress ({done} of {PHASES} phases done: {PHASE_DONE[done]}); "
        "nothing else may issue certificates from the store until it ends",
        hint=f"finish it first: kubeforge certs rotate-ca --ca {ca} -i {cluster.source} --resume "
             "(or without --resume to plan what is left from the store's record)")


def _write_state(store: Store, state: RotationState) -> None:
    store.write_many({STATE: (json.dumps(state.to_json(), indent=2).encode() + b"\n", KEY_MODE)})
    _fsync_dir(store.root)


def start(cluster: Cluster, *, ca: str = "etcd", root: Path | None = None, now: datetime | None = None,
          apiserver_sans: Mapping[str, Sequence[str]] | None = None, kubelets: Sequence[str] = (),
          subjects: Mapping[str, tuple[str, str | None]] | None = None
          ) -> EtcdRotation | FrontProxyRotation | ClusterRotation:
    """Load the rotation under way, or begin one: the new CA written first, then the state, then the
    leaves it signs. ``root`` elsewhere (a dry run's scratch directory) leaves the store untouched.
    Another CA's rotation under way is refused (the store may change only through one at a time).
    The kubernetes CA's leaves: per control plane in ``apiserver_sans`` (the SANs of its API server
    certificate) its own, and a kubelet client certificate per node in ``kubelets``; ``subjects``: the
    (CN, O) kubeadm gave the clients it issued, per ``<item>/<host>`` (ensure.ensure_cluster_leaves)."""
    now = now or datetime.now(UTC)
    extra = (apiserver_sans or {}, tuple(kubelets), subjects or {})
    if root is not None:
        return _start(cluster, ca, root, now, real=False, extra=extra)
    # two runs started at once (before the run engine's locks) must not make two new CAs: the second
    # waits here and loads the first one's; the engine's lock then refuses one of them
    with _exclusive(cluster.pki_dir / ROTATION / ".lock"):
        refuse_while_rotating(cluster, but=ca)
        _drop_committed(cluster)
        return _start(cluster, ca, rotation_dir(cluster, ca), now, real=True, extra=extra)


def _start(cluster: Cluster, ca: str, root: Path, now: datetime, *, real: bool,
           extra: tuple[Mapping[str, Sequence[str]], tuple[str, ...], Mapping[str, tuple[str, str | None]]] = ({}, (), {})
           ) -> EtcdRotation | FrontProxyRotation | ClusterRotation:
    from kubeforge.pki.ensure import ensure_cluster_leaves, ensure_etcd_leaves, ensure_front_proxy_clients, load_pki

    old = load_pki(cluster)
    old_ca = {"front-proxy": old.front_proxy_ca, "kubernetes": old.kube_ca}.get(ca, old.etcd_ca)
    ca_rel = ROTATED[ca][1]
    store = Store(root)
    state = read_state(cluster, ca) if real else None
    if state is not None and state.phases_done < PHASES and cert_sha256(old_ca.cert) != state.old_sha256:
        raise PkiStoreError(
            f"{old_ca.path}: is not the CA this rotation started from (the store changed under it)",
            hint=f"restore the store's {ca_rel}.crt and .key from a backup taken before the rotation began")
    new_ca, new_key = _next_ca(cluster, ca, store, now)
    if state is not None and cert_sha256(new_ca.cert) != state.new_sha256:
        raise PkiStoreError(f"{store.path(ca_rel + '.crt')}: is not the new CA this rotation recorded",
                            hint="restore the rotation directory from a backup of the store")
    if state is None:
        state = RotationState(ca, 0, cert_sha256(old_ca.cert), cert_sha256(new_ca.cert),
                              now.isoformat(timespec="seconds"))
        _write_state(store, state)
    if ca == "kubernetes":
        sans, kubelets, subjects = extra
        return ClusterRotation(state, old, new_ca, ensure_cluster_leaves(
            cluster, root, new_ca, new_key, apiserver_sans=sans, kubelets=kubelets, subjects=subjects, now=now))
    if ca == "front-proxy":
        return FrontProxyRotation(state, old, new_ca, ensure_front_proxy_clients(cluster, root, new_ca, new_key, now=now))
    leaves = ensure_etcd_leaves(cluster, root, new_ca, new_key, now=now)
    new = replace(old, etcd_ca=new_ca, etcd_healthcheck_client=leaves["etcd-healthcheck-client"],
                  apiserver_etcd_client=leaves["apiserver-etcd-client"],
                  etcd_servers={h.name: leaves[f"etcd-server/{h.name}"] for h in cluster.etcd_members},
                  etcd_peers={h.name: leaves[f"etcd-peer/{h.name}"] for h in cluster.etcd_members})
    return EtcdRotation(state, old, new)


def _next_ca(cluster: Cluster, ca: str, store: Store, now: datetime) -> tuple[CertPair, crypto.PrivateKey]:
    _, rel, cn = ROTATED[ca]
    crt, key = rel + ".crt", rel + ".key"
    if store.exists(crt) and store.exists(key):
        cert, k = crypto.load_cert(store.read(crt)), crypto.load_key(store.read(key), validate=True)
        if not crypto.same_public_key(cert, k):
            raise PkiStoreError(f"{store.path(key)}: does not belong to {store.path(crt)}")
        return CertPair(store.read(crt), store.read(key), cert, store.path(crt)), k
    if store.exists(crt) or store.exists(key):
        raise PkiStoreError(f"{store.path(crt if not store.exists(crt) else key)}: missing beside its pair; "
                            "kubeforge never generates a rotation's new CA twice",
                            hint="restore the rotation directory from a backup of the store")
    store.ensure_dir()
    k = crypto.generate_key(cluster.pki.key_type)
    cert = crypto.issue_ca(k, cn, days=cluster.pki.ca_days, now=now)
    key_pem, cert_pem = crypto.key_to_pem(k), crypto.cert_to_pem(cert)
    store.write_many({key: (key_pem, KEY_MODE), crt: (cert_pem, CERT_MODE)})
    _fsync_dir(store.path(crt).parent)
    return CertPair(cert_pem, key_pem, cert, store.path(crt)), k


def record(cluster: Cluster, phases_done: int, ca: str = "etcd") -> bool:
    """Write down that ``phases_done`` phases are done (False when the store already said so)."""
    state = read_state(cluster, ca)
    if state is None:
        raise PkiStoreError(f"{rotation_dir(cluster, ca) / STATE}: missing: no rotation of the {ca} CA is under way")
    if state.phases_done >= phases_done:
        return False
    _write_state(Store(rotation_dir(cluster, ca)), replace(state, phases_done=phases_done))
    return True


def commit(cluster: Cluster, ca: str = "etcd") -> bool:
    """After phase 3: the next set replaces the main store's CA (etcd: and its leaves), and the
    rotation directory goes (renamed away first, so an interruption never leaves half a rotation
    behind)."""
    root = rotation_dir(cluster, ca)
    state = read_state(cluster, ca)
    if state is None:
        return False
    if state.phases_done < PHASES:
        raise PkiStoreError(f"{root}: the old CA is still trusted on the hosts ({state.phases_done} of "
                            f"{PHASES} phases done); the store keeps it until the last phase is done")
    files = {str(p.relative_to(root)): (p.read_bytes(), KEY_MODE if p.suffix == ".key" else CERT_MODE)
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != STATE and not p.name.startswith(".tmp-")}
    if ca != "etcd":  # the main store holds the CA alone; its leaves are kubeadm's on the hosts
        files = {rel: v for rel, v in files.items() if rel.rsplit(".", 1)[0] == ROTATED[ca][1]}
    Store(cluster.pki_dir).write_many(files)
    done = root.with_name(f"{ROTATED[ca][0]}.committed-{datetime.now(UTC):%Y%m%dT%H%M%S}")
    os.replace(root, done)
    _fsync_dir(root.parent)
    _drop_committed(cluster)
    return True


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    Store(path.parent.parent).ensure_dir(path.parent.name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _drop_committed(cluster: Cluster) -> None:
    parent = cluster.pki_dir / ROTATION
    if parent.is_dir():
        for name, _, _ in ROTATED.values():
            for d in parent.glob(f"{name}.committed-*"):
                shutil.rmtree(d, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
