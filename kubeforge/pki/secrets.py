"""Cluster secrets resolved before planning: the kubeadm bootstrap token and the certificate key.

Generated once, kept in ``<pki_dir>/secrets.json`` (0600) and reused, so a plan printed today is the
plan executed today, and a re-run joins nodes with the same values.
"""

from __future__ import annotations

import json
import re
import secrets as _random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kubeforge.model.cluster import Cluster
from kubeforge.model.secret import Secret
from kubeforge.pki.store import KEY_MODE, PkiStoreError, Store

SECRETS_FILE = "secrets.json"
# kubeadm's own default lifetime for a bootstrap token.
DEFAULT_TOKEN_TTL = timedelta(hours=24)

TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
CERT_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class ClusterSecrets:
    bootstrap_token: Secret  # "abcdef.0123456789abcdef" for kubeadm init/join
    certificate_key: Secret  # 64 hex chars: kubeadm init --upload-certs / join --control-plane
    bootstrap_token_created: datetime
    bootstrap_token_ttl: timedelta = DEFAULT_TOKEN_TTL

    @property
    def bootstrap_token_id(self) -> str:
        """The public half of the token (``kubeadm token list`` shows it); safe to log."""
        return self.bootstrap_token.reveal().split(".", 1)[0]

    @property
    def bootstrap_token_expires(self) -> datetime:
        return self.bootstrap_token_created + self.bootstrap_token_ttl

    def bootstrap_token_expired(self, now: datetime) -> bool:
        return now >= self.bootstrap_token_expires


def new_bootstrap_token() -> Secret:
    pick = lambda n: "".join(_random.choice(_TOKEN_ALPHABET) for _ in range(n))  # noqa: E731
    return Secret(f"{pick(6)}.{pick(16)}")


def new_certificate_key() -> Secret:
    return Secret(_random.token_hex(32))


def _write(store: Store, s: ClusterSecrets) -> None:
    doc = {
        "bootstrapToken": s.bootstrap_token.reveal(),
        "bootstrapTokenCreated": s.bootstrap_token_created.isoformat(),
        "bootstrapTokenTTLSeconds": int(s.bootstrap_token_ttl.total_seconds()),
        "certificateKey": s.certificate_key.reveal(),
    }
    store.ensure_dir()
    store.write_many({SECRETS_FILE: ((json.dumps(doc, indent=2) + "\n").encode(), KEY_MODE)})


def _read(store: Store) -> ClusterSecrets:
    path = store.path(SECRETS_FILE)
    try:
        doc = json.loads(store.read(SECRETS_FILE, secret=True))
        token, key = doc["bootstrapToken"], doc["certificateKey"]
        created = datetime.fromisoformat(doc["bootstrapTokenCreated"])
        ttl = timedelta(seconds=int(doc["bootstrapTokenTTLSeconds"]))
    except (ValueError, KeyError, TypeError) as exc:
        # Never echo the content: it holds the secrets.
        raise PkiStoreError(f"{path}: unreadable cluster secrets ({exc.__class__.__name__})") from None
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        raise PkiStoreError(f"{path}: bootstrapToken is not in kubeadm's [a-z0-9]{{6}}.[a-z0-9]{{16}} format")
    if not isinstance(key, str) or not CERT_KEY_RE.match(key):
        raise PkiStoreError(f"{path}: certificateKey is not 64 hexadecimal characters")
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return ClusterSecrets(Secret(token), Secret(key), created, ttl)


def ensure_secrets(
    cluster: Cluster, *, now: datetime | None = None, ttl: timedelta = DEFAULT_TOKEN_TTL
) -> ClusterSecrets:
    """The cluster's secrets, generated on first use and read back afterwards (``ttl`` applies only
    when the token is created)."""
    store = Store(cluster.pki_dir)
    if store.exists(SECRETS_FILE):
        return _read(store)
    s = ClusterSecrets(
        bootstrap_token=new_bootstrap_token(),
        certificate_key=new_certificate_key(),
        bootstrap_token_created=now or datetime.now(UTC),
        bootstrap_token_ttl=ttl,
    )
    _write(store, s)
    return s


def rotate_bootstrap_token(
    cluster: Cluster, *, now: datetime | None = None, ttl: timedelta | None = None
) -> ClusterSecrets:
    """Replace the bootstrap token (e.g. when joining nodes after the old one expired); the certificate
    key is kept. The caller still has to create the new token in the cluster (``kubeadm token create``)."""
    old = ensure_secrets(cluster, now=now)
    s = ClusterSecrets(
        bootstrap_token=new_bootstrap_token(),
        certificate_key=old.certificate_key,
        bootstrap_token_created=now or datetime.now(UTC),
        bootstrap_token_ttl=ttl if ttl is not None else old.bootstrap_token_ttl,
    )
    _write(Store(cluster.pki_dir), s)
    return s
