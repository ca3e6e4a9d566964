"""Which PKI files each host receives, with kubeadm's paths, owners and modes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubeforge.model import EtcdTopology
from kubeforge.pki import ensure_pki, host_files
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory.mktemp("ext"))
    return cluster, ensure_pki(cluster, now=NOW).bundle


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    cluster = make_cluster(tmp_path_factory.mktemp("stacked"), topology=EtcdTopology.STACKED)
    return cluster, ensure_pki(cluster, now=NOW).bundle


def by_path(files):
    return {f.path: f for f in files}


def test_external_control_plane_gets_kube_cas_sa_keys_etcd_ca_cert_and_apiserver_client(external):
    cluster, bundle = external
    files = by_path(host_files(cluster, bundle, cluster.host("cp-1")))
    assert sorted(files) == sorted(
        f"/etc/kubernetes/pki/{n}"
        for n in (
            "ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.key", "sa.pub",
            "etcd/ca.crt", "apiserver-etcd-client.crt", "apiserver-etcd-client.key",
        )
    )
    assert files["/etc/kubernetes/pki/ca.crt"].content == bundle.kube_ca.cert_pem
    assert files["/etc/kubernetes/pki/sa.key"].content == bundle.sa.private_pem


def test_stacked_control_plane_gets_the_etcd_ca_key_and_no_apiserver_client(stacked):
    cluster, bundle = stacked
    paths = set(by_path(host_files(cluster, bundle, cluster.host("cp-2"))))
    assert {"/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/pki/etcd/ca.key"} <= paths
    assert "/etc/kubernetes/pki/apiserver-etcd-client.crt" not in paths
    assert not any(p.startswith("/etc/etcd/") for p in paths)


def test_external_etcd_member_gets_its_own_server_and_peer_certificates_owned_by_etcd(external):
    cluster, bundle = external
    files = by_path(host_files(cluster, bundle, cluster.host("etcd-2")))
    assert sorted(files) == [
        f"/etc/etcd/pki/{n}"
        for n in (
            "ca.crt", "healthcheck-client.crt", "healthcheck-client.key",
            "peer.crt", "peer.key", "server.crt", "server.key",
        )
    ]
    assert files["/etc/etcd/pki/server.crt"].content == bundle.etcd_server("etcd-2").cert_pem
    assert files["/etc/etcd/pki/peer.key"].content == bundle.etcd_peer("etcd-2").key_pem
    for f in files.values():
        if f.path.endswith(".key"):
            assert (f.owner, f.group, f.mode, f.secret) == ("etcd", "etcd", 0o600, True)
        else:
            assert (f.mode, f.secret) == (0o644, False)


def test_workers_receive_no_pki_files(external):
    cluster, bundle = external
    assert host_files(cluster, bundle, cluster.host("worker-1")) == []


def test_every_key_file_is_secret_0600_and_every_other_file_is_not(external, stacked):
    for cluster, bundle in (external, stacked):
        for host in cluster.hosts:
            for f in host_files(cluster, bundle, host):
                is_key = f.path.endswith(".key")
                assert f.secret is is_key and (f.mode == 0o600) is is_key, f.path
                assert b"PRIVATE KEY" not in repr(f).encode()


def test_layout_is_the_same_for_the_same_bundle(external):
    cluster, bundle = external
    host = cluster.host("cp-3")
    assert [f.sha256 for f in host_files(cluster, bundle, host)] == [f.sha256 for f in host_files(cluster, bundle, host)]
