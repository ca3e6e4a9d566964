"""The cluster PKI and secrets: CAs, etcd member and client certificates, service-account keys,
bootstrap token and certificate key, kept in ``.kubeforge/<cluster>/pki/`` beside the inventory."""

from kubeforge.pki.bundle import CertPair, KeyPair, PkiBundle, PkiChange, PkiResult  # noqa: F401
from kubeforge.pki.ensure import ensure_pki, leaf_items, load_pki  # noqa: F401
from kubeforge.pki.expiry import CertStatus, expiring, expiry_report  # noqa: F401
from kubeforge.pki.layout import host_files  # noqa: F401
from kubeforge.pki.secrets import ClusterSecrets, ensure_secrets, rotate_bootstrap_token  # noqa: F401
from kubeforge.pki.store import PkiStoreError  # noqa: F401
