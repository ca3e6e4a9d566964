"""kubeadm init/join preflight as kubeadm's: leftover static Pod manifests, a non-empty /var/lib/etcd
for stacked etcd, IP forwarding off, ports in use; each an `[ERROR Name]` in kubeadm's wording that
`--ignore-preflight-errors` turns into a warning."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tests.sim import testing as T
from tests.sim.kubesim import preflight
from tests.sim.kubesim.pki import ca_cert_hash
from tests.unit.test_sim_cli import V33, Lab, env, init_config, lab, ready_lab  # noqa: F401  (fixtures)


def _init(root: str, cfg: Path, *flags: str):
    return T.run("kubeadm", root, ["init", "--config", str(cfg), *flags], V33)


def _write(root: str, path: str, text: str) -> None:
    full = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)


def test_init_refuses_a_machine_with_leftover_manifests_and_etcd_data_and_writes_nothing(env: Path) -> None:
    root = T.make_machine(str(env / "cp-1"), "cp-1", V33)
    (env / "init.yaml").write_text(init_config(V33))
    _write(root, "/etc/kubernetes/manifests/kube-scheduler.yaml", "kind: Pod\n")
    _write(root, "/var/lib/etcd/member/snap/db", "x")
    rc, _, err = _init(root, env / "init.yaml")
    assert rc == 1, err
    assert "[ERROR FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml]: " \
           "/etc/kubernetes/manifests/kube-scheduler.yaml already exists" in err
    assert "[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty" in err
    assert not os.path.exists(f"{root}/etc/kubernetes/admin.conf")


def test_init_refuses_ip_forwarding_off_unless_that_check_is_ignored(env: Path) -> None:
    root = T.make_machine(str(env / "cp-1"), "cp-1", V33)
    (env / "init.yaml").write_text(init_config(V33))
    _write(root, "/proc/sys/net/ipv4/ip_forward", "0\n")
    rc, _, err = _init(root, env / "init.yaml")
    assert rc == 1 and "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: /proc/sys/net/ipv4/ip_forward contents " \
                       "are not set to 1" in err
    # ignored, it is a warning and init goes past preflight (its later phases may still fail here)
    rc, _, err = _init(root, env / "init.yaml", "--ignore-preflight-errors=FileContent--proc-sys-net-ipv4-ip_forward")
    assert "[WARNING FileContent--proc-sys-net-ipv4-ip_forward]" in err and "preflight checks failed" not in err


def test_a_port_something_listens_on_is_in_use_as_kubeadm_sees_it() -> None:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert preflight.port_checks([port]) == [(f"Port-{port}", f"Port {port} is in use")]
    assert preflight.port_checks([port]) == [(f"Port-{port}", None)]


def test_a_control_plane_join_refuses_stacked_etcd_data_left_on_the_machine(ready_lab: Lab) -> None:
    ready_lab.kubeadm(ready_lab.cp, "init", "phase", "upload-certs", "--upload-certs",
                      "--config", str(ready_lab.base / "init.yaml"))
    cp2 = T.make_machine(str(ready_lab.base / "cp-2"), "cp-2", V33)
    _write(cp2, "/var/lib/etcd/member/wal/0.wal", "x")
    join = ["join", "127.0.0.1:6443", "--token", "abcdef.0123456789abcdef", "--discovery-token-ca-cert-hash",
            ca_cert_hash(ready_lab.ca_pem), "--control-plane", "--certificate-key", "ab" * 32]
    rc, _, err = T.run("kubeadm", cp2, join, V33)
    assert rc == 1 and "[ERROR DirAvailable--var-lib-etcd]: /var/lib/etcd is not empty" in err, err
    assert "cp-2" not in ready_lab.state()["nodes"]
    # a worker joining with the same leftover directory is not refused: it runs no etcd
    w2 = T.make_machine(str(ready_lab.base / "worker-2"), "worker-2", V33)
    _write(w2, "/var/lib/etcd/member/wal/0.wal", "x")
    rc, _, err = T.run("kubeadm", w2, join[:6], V33)
    assert rc == 0, err
