"""The simulator's test clock: moving the cluster's time forward expires bootstrap tokens (24 h) and
the uploaded certificates (2 h) as the real cluster does, so a `--resume` a day later can be tested."""

from __future__ import annotations

import json
from pathlib import Path

from tests.sim import testing as T
from tests.sim.kubesim.apiserver import LocalBackend
from tests.sim.kubesim.pki import ca_cert_hash
from tests.sim.kubesim.store import FileStore
from tests.unit.test_sim_cli import CNI, TOKEN, V33, Lab, env, ready_lab, simlab  # noqa: F401  (fixtures)

INIT = {"version": "v1.34.2", "caCertHash": "sha256:00", "certKeyHash": "c" * 64,
        "tokens": [{"id": "abcdef", "hash": "t" * 64, "ttl": 86400}],
        "node": {"name": "cp-1", "kubeletVersion": "v1.34.2"}}


def _join(name: str, control_plane: bool = False) -> dict:
    return {"tokenId": "abcdef", "tokenHash": "t" * 64, "caCertHashes": ["sha256:00"], "controlPlane": control_plane,
            "certKeyHash": "c" * 64 if control_plane else None, "node": {"name": name, "kubeletVersion": "v1.34.2"}}


def test_advancing_the_clock_moves_every_rule_that_reads_time(tmp_path: Path) -> None:
    backend = LocalBackend(FileStore(str(tmp_path / "state.json")), clock=lambda: 1000.0)
    assert backend.op("init", INIT)[0] == 200
    assert backend.view()["now"] == 1000.0
    status, body = backend.op("clock_advance", {"seconds": 7201})
    assert status == 200 and body["result"]["clockOffset"] == 7201
    assert backend.view()["now"] == 1000.0 + 7201
    # 2 h later: the token still lets a worker in, the uploaded certificates are gone
    status, body = backend.op("join", _join("cp-2", control_plane=True))
    assert status == 404 and 'Secret "kubeadm-certs" was not found' in body["error"]
    assert backend.op("join", _join("worker-1"))[0] == 200
    # a day later the token is gone too, until a new one is created (kubeadm token create)
    assert backend.op("clock_advance", {"seconds": 86400})[0] == 200
    status, body = backend.op("join", _join("worker-2"))
    assert status == 401 and 'could not find a JWS signature in the cluster-info ConfigMap for token ID "abcdef"' \
        in body["error"]
    assert backend.op("token_create", {"id": "abcdef", "hash": "t" * 64, "ttl": 86400})[0] == 200
    assert backend.op("upload_certs", {"certKeyHash": "c" * 64})[0] == 200
    assert backend.op("join", _join("worker-2"))[0] == 200
    assert backend.op("join", _join("cp-2", control_plane=True))[0] == 200


def test_the_clock_never_moves_back(tmp_path: Path) -> None:
    backend = LocalBackend(FileStore(str(tmp_path / "state.json")), clock=lambda: 1000.0)
    backend.op("init", INIT)
    status, body = backend.op("clock_advance", {"seconds": -60})
    assert status == 400 and "only moves forward" in body["error"]
    assert backend.view()["now"] == 1000.0


def test_kubectl_sim_advance_clock_expires_the_token_for_a_join_and_token_create_renews_it(ready_lab: Lab) -> None:
    rc, out, err = ready_lab.kubectl("sim", "advance-clock", "25h")
    assert rc == 0 and json.loads(out)["clockOffset"] == 25 * 3600, err
    w2 = T.make_machine(str(ready_lab.base / "worker-2"), "worker-2", V33)
    join = ["join", "127.0.0.1:6443", "--token", TOKEN, "--discovery-token-ca-cert-hash", ca_cert_hash(ready_lab.ca_pem)]
    rc, _, err = T.run("kubeadm", w2, join, V33)
    assert rc == 1 and "could not find a JWS signature" in err
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "token", "create", TOKEN)
    assert rc == 0, err
    rc, _, err = T.run("kubeadm", w2, join, V33)
    assert rc == 0, err
    # the nodes' heartbeats follow the moved clock: the nodes stay (or at once become again) Ready
    ready_lab.wait_ready("cp-1", "worker-1")


def test_kubectl_shows_live_bootstrap_token_and_kubeadm_certs_secrets_and_not_expired_ones(ready_lab: Lab) -> None:
    tid = TOKEN.split(".")[0]
    rc, out, err = ready_lab.kubectl("get", "secret", f"bootstrap-token-{tid}", "-n", "kube-system", "-o", "json")
    assert rc == 0 and json.loads(out)["type"] == "bootstrap.kubernetes.io/token", err
    assert ready_lab.kubectl("get", "secret", "kubeadm-certs", "-n", "kube-system")[0] == 0
    assert ready_lab.kubectl("sim", "advance-clock", "3h")[0] == 0
    rc, _, err = ready_lab.kubectl("get", "secret", "kubeadm-certs", "-n", "kube-system")
    assert rc == 1 and 'Error from server (NotFound): secrets "kubeadm-certs" not found' in err
    assert ready_lab.kubectl("get", "secret", f"bootstrap-token-{tid}", "-n", "kube-system")[0] == 0
    assert ready_lab.kubectl("sim", "advance-clock", "22h")[0] == 0
    rc, _, err = ready_lab.kubectl("get", "secret", f"bootstrap-token-{tid}", "-n", "kube-system")
    assert rc == 1 and f'secrets "bootstrap-token-{tid}" not found' in err
    # the token's value is never shown: only its id and expiry
    assert "0123456789abcdef" not in ready_lab.kubectl("get", "secrets", "-n", "kube-system", "-o", "yaml")[1]


def test_resetting_the_clock_moves_every_stored_time_back_and_keeps_what_was_measured(tmp_path: Path) -> None:
    now = [1000.0]
    backend = LocalBackend(FileStore(str(tmp_path / "state.json")), clock=lambda: now[0])
    backend.op("init", INIT)
    backend.op("clock_advance", {"seconds": 25 * 3600})
    # made a day ahead: a token with 24 h to live, a heartbeat just now
    assert backend.op("token_create", {"id": "ghijkl", "hash": "u" * 64, "ttl": 86400})[0] == 200
    backend.op("heartbeat", {"node": "cp-1", "kubeletVersion": "v1.34.2"})
    status, body = backend.op("clock_reset", {})
    assert status == 200 and body["result"]["clockOffset"] == 0.0
    view = backend.view()
    assert view["now"] == 1000.0
    # the old token (expired a day ahead) stays expired; the new one keeps its 24 h
    assert view["bootstrapTokens"] == {"ghijkl": 1000.0 + 86400}
    # the heartbeat is as old as it was, not a day in the future: a kubelet that stops goes NotReady
    now[0] += 60
    assert backend.view()["nodes"]["cp-1"]["lastHeartbeat"] == 1000.0


def test_kubectl_sim_reset_clock_undoes_advance_clock(ready_lab: Lab) -> None:
    assert ready_lab.kubectl("sim", "advance-clock", "25h")[0] == 0
    rc, out, err = ready_lab.kubectl("sim", "reset-clock")
    assert rc == 0 and json.loads(out)["clockOffset"] == 0.0, err
    state = json.loads(ready_lab.kubectl("sim", "state")[1])
    assert abs(state["now"] - __import__("time").time()) < 60
