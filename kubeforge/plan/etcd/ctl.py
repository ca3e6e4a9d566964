"""etcdctl invocations moved to kubeforge.facts.etcdctl (probes and phases build them there);
re-exported here for code written against this module's old place."""

from kubeforge.facts.etcdctl import (  # noqa: F401
    EXTERNAL_TLS,
    OLDEST_MINOR,
    REMOTE_WORK_DIR,
    REQUESTS,
    STACKED_TLS,
    EtcdRequest,
    EtcdTls,
    UnsafeEtcdRequest,
    client_url,
    etcdctl,
    etcdctl_argv,
    etcdctl_line,
    initial_cluster,
    may_send,
    peer_url,
    request_for,
    tls_for,
)
