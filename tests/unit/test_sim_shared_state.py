"""Several API servers over one real etcd share the cluster, and an etcd snapshot restore brings it back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.sim.kubesim import client
from tests.sim.kubesim.apiserver import ApiServer, LocalBackend
from tests.sim.testing import LoopbackApiPki, LoopbackEtcd

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None or shutil.which("etcdctl") is None,
                                reason="etcd-server and etcd-client are needed (apt: etcd-server etcd-client)")

INIT = {"version": "v1.34.2", "caCertHash": "sha256:00", "tokens": [], "etcd": "external",
        "node": {"name": "cp-1", "kubeletVersion": "v1.34.2"}}


PKI: list[LoopbackApiPki] = []


def _servers(etcd: LoopbackEtcd) -> list[ApiServer]:
    PKI[:] = [LoopbackApiPki(f"{etcd.dir}/api")]
    return [ApiServer(LocalBackend(etcd.store()), "v1.34.2", ["127.0.0.1"], port=0, ssl_ctx=PKI[0].server_context())
            for _ in range(2)]


def _base(server: ApiServer) -> list[str]:
    return PKI[0].bases(server.port)


def test_two_api_servers_on_one_etcd_see_each_others_writes(tmp_path: Path) -> None:
    etcd = LoopbackEtcd(str(tmp_path))
    a, b = _servers(etcd)
    try:
        client.op(_base(a), "init", INIT)
        client.op(_base(b), "cordon", {"node": "cp-1", "unschedulable": True})
        assert client.get(_base(a), "/kubesim/state")["nodes"]["cp-1"]["unschedulable"] is True
        with pytest.raises(client.SimError, match="already initialised"):
            client.op(_base(b), "init", dict(INIT, node={"name": "cp-2", "kubeletVersion": "v1.34.2"}))
        assert [v["node"] for v in client.get(_base(a), "/kubesim/violations")] == ["cp-2"]
    finally:
        a.stop()
        b.stop()
        etcd.stop()


def test_etcd_snapshot_restore_brings_back_the_cluster_objects(tmp_path: Path) -> None:
    etcd = LoopbackEtcd(str(tmp_path))
    (server,) = _servers(etcd)[:1]
    try:
        client.op(_base(server), "init", INIT)
        client.op(_base(server), "apply", {"objects": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                        "metadata": {"name": "web"}, "spec": {"replicas": 2}}]})
        snap = tmp_path / "snap.db"
        saved = etcd.etcdctl("snapshot", "save", str(snap))
        assert saved.returncode == 0, saved.stderr
        client.op(_base(server), "reset", {"node": "cp-1"})
        client.op(_base(server), "apply", {"objects": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                        "metadata": {"name": "web"}, "spec": {"replicas": 5}}]})
    finally:
        server.stop()
        etcd.stop()
    peer = "http://127.0.0.1:2380"  # recorded in the restored membership only; a single member never dials it
    restored = etcd.etcdctl("snapshot", "restore", str(snap), "--name", "m1", f"--initial-cluster=m1={peer}",
                            f"--initial-advertise-peer-urls={peer}", f"--data-dir={tmp_path}/restored")
    assert restored.returncode == 0, restored.stderr
    again = LoopbackEtcd(str(tmp_path), data_dir=f"{tmp_path}/restored")
    try:
        st = again.store().read()
        assert "cp-1" in st["nodes"]
        assert st["objects"]["Deployment/default/web"]["replicas"] == 2
    finally:
        again.stop()
