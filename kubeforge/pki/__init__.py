"""The cluster PKI and secrets: CAs, etcd member and client certificates, service-account keys,
bootstrap token and certificate key, kept in ``.kubeforge/<cluster>/pki/`` beside the inventory."""

from kubeforge.pki.bundle import CertPair, KeyPair, PkiBundle, PkiChange, PkiResult  # noqa: F401
from kubeforge.pki.ensure import ensure_pki, load_pki  # noqa: F401
from kubeforge.pki.store import PkiStoreError  # noqa: F401
