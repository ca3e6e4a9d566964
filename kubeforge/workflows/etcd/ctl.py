"""etcdctl invocations live in kubeforge.facts.etcdctl (probes and phases build them there); re-exported here."""

from kubeforge.facts.etcdctl import (  # noqa: F401
    EXTERNAL_TLS,
    REMOTE_WORK_DIR,
    STACKED_TLS,
    EtcdTls,
    client_url,
    etcdctl,
    etcdctl_argv,
    etcdctl_line,
    initial_cluster,
    peer_url,
    tls_for,
)
