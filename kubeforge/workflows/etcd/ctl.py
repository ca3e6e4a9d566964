"""etcdctl invocations live in the plan layer (phases need them too); re-exported here."""

from kubeforge.plan.etcd.ctl import (  # noqa: F401
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
