"""Where the simulated API objects live: a locked JSON file, or the real etcd over its v3 JSON gateway."""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import pytest

from tests.need import skip_or_fail
from tests.sim.kubesim.apiserver import LocalBackend
from tests.sim.kubesim.store import EtcdStore, FileStore
from tests.sim.testing import LoopbackEtcd


def _bump(st: dict) -> int:
    st["seq"] += 1
    return st["seq"]


def _hammer(make_store, threads: int = 4, each: int = 15) -> None:
    def work() -> None:
        store = make_store()  # one store per thread: like several API servers sharing the state
        for _ in range(each):
            store.transact(_bump)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def test_file_store_serialises_concurrent_writers(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    _hammer(lambda: FileStore(path))
    assert FileStore(path).read()["seq"] == 60


def test_a_refusal_the_real_tool_makes_is_recorded_as_a_violation(tmp_path: Path) -> None:
    backend = LocalBackend(FileStore(str(tmp_path / "state.json")), clock=lambda: 1000.0)
    init = {"version": "v1.34.2", "caCertHash": "sha256:00", "node": {"name": "cp-1", "kubeletVersion": "v1.34.2"}}
    assert backend.op("init", init)[0] == 200
    status, body = backend.op("init", dict(init, node={"name": "cp-2", "kubeletVersion": "v1.34.2"}))
    assert status == 409 and "already initialised" in body["error"]
    assert [v["node"] for v in backend.view()["violations"]] == ["cp-2"]


def test_view_hides_token_and_certificate_key_hashes(tmp_path: Path) -> None:
    backend = LocalBackend(FileStore(str(tmp_path / "state.json")), clock=lambda: 1000.0)
    backend.op("init", {"version": "v1.34.2", "caCertHash": "sha256:00", "certKeyHash": "x" * 64,
                        "tokens": [{"id": "abcdef", "hash": "y" * 64, "ttl": 60}],
                        "node": {"name": "cp-1", "kubeletVersion": "v1.34.2"}})
    view = backend.view()
    assert "tokens" not in view and "certs" not in view and "x" * 64 not in str(view)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("etcd") is None or shutil.which("openssl") is None:
        skip_or_fail("etcd-server and openssl are needed (apt: etcd-server openssl)")
    etcd = LoopbackEtcd(str(tmp_path_factory.mktemp("etcd")))
    yield {"url": etcd.url, "dir": Path(etcd.dir)}
    etcd.stop()


def _store(e: dict) -> EtcdStore:
    d = e["dir"]
    return EtcdStore([e["url"]], f"{d}/ca.crt", f"{d}/client.crt", f"{d}/client.key")


def test_etcd_store_keeps_the_state_in_real_etcd_with_compare_and_swap(tls_etcd: dict) -> None:
    before = _store(tls_etcd).read()["seq"]
    _hammer(lambda: _store(tls_etcd))
    assert _store(tls_etcd).read()["seq"] == before + 60


def test_etcd_store_refuses_a_client_without_a_certificate(tls_etcd: dict) -> None:
    from tests.sim.kubesim.host import SimError

    with pytest.raises(SimError, match="etcd unreachable"):
        EtcdStore([tls_etcd["url"]], f"{tls_etcd['dir']}/ca.crt").read()


def test_etcd_store_fails_over_to_the_next_endpoint(tls_etcd: dict) -> None:
    d = tls_etcd["dir"]
    dead = f"https://127.0.0.1:{_free_port()}"
    store = EtcdStore([dead, tls_etcd["url"]], f"{d}/ca.crt", f"{d}/client.crt", f"{d}/client.key")
    assert store.transact(_bump) == store.read()["seq"]


def test_etcd_store_compacts_history_like_the_api_server(tls_etcd: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.sim.kubesim import store as store_mod
    from tests.sim.kubesim.store import STATE_KEY, _b64

    monkeypatch.setattr(store_mod, "COMPACT_EVERY", 5)
    s = _store(tls_etcd)
    for _ in range(5):
        s.transact(_bump)
    from tests.sim.kubesim.host import SimError

    with pytest.raises(SimError, match="compacted"):
        s._post("/v3/kv/range", {"key": _b64(STATE_KEY), "revision": "2"})


def test_a_transaction_that_changes_nothing_writes_nothing(tls_etcd: dict) -> None:
    from tests.sim.kubesim.store import STATE_KEY, _b64

    s = _store(tls_etcd)
    s.transact(_bump)
    rev = s._post("/v3/kv/range", {"key": _b64(STATE_KEY)})["header"]["revision"]
    s.transact(lambda st: st["seq"])
    assert s._post("/v3/kv/range", {"key": _b64(STATE_KEY)})["header"]["revision"] == rev


def test_a_transaction_that_changes_nothing_does_not_wait_for_the_api_servers_writes(tls_etcd: dict) -> None:
    s = _store(tls_etcd)
    seq = s.transact(_bump)
    answers: list[int] = []
    with s._lock:  # a write of this API server in progress (one etcd commit each)
        reader = threading.Thread(target=lambda: answers.append(s.transact(lambda st: st["seq"])))
        reader.start()
        reader.join(30)
        assert answers == [seq], "the read was answered while the write lock was held"
        writer = threading.Thread(target=lambda: answers.append(s.transact(_bump)))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive() and answers == [seq], "a write still waits its turn"
    writer.join(30)
    assert answers == [seq, seq + 1] and s.read()["seq"] == seq + 1


def test_a_stacked_secondary_api_server_proxies_to_the_first_control_planes_state(tmp_path: Path) -> None:
    from tests.sim.kubesim import client
    from tests.sim.kubesim.apiserver import ApiServer, ProxyBackend
    from tests.sim.testing import LoopbackApiPki

    pki = LoopbackApiPki(str(tmp_path))
    first = ApiServer(LocalBackend(FileStore(str(tmp_path / "state.json"))), "v1.34.2", ["127.0.0.1"], port=0,
                      ssl_ctx=pki.server_context())
    # the second control plane's API server reaches the first with its own admin.conf
    second = ApiServer(ProxyBackend(f"https://127.0.0.1:{first.port}", pki.admin), "v1.34.2", ["127.0.0.1"], port=0,
                       ssl_ctx=pki.server_context())
    try:
        via_second = pki.bases(second.port)
        client.op(via_second, "init", {"version": "v1.34.2", "caCertHash": "sha256:00",
                                       "node": {"name": "cp-1", "kubeletVersion": "v1.34.2"}})
        assert "cp-1" in FileStore(str(tmp_path / "state.json")).read()["nodes"]
        assert client.get(via_second, "/kubesim/state")["initialized"] is True
    finally:
        second.stop()
        first.stop()
