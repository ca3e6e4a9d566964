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
from tests.unit.test_sim_cli import V33, Lab, env, init_config, ready_lab, simlab  # noqa: F401  (fixtures)


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


def _sim_kubeadm_on_path(bin_dir: Path, version: str) -> None:
    import sys

    sim_dir = Path(T.__file__).parent
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "kubeadm").write_text(
        "#!/bin/sh\n"
        f"exec {sys.executable} -c 'import sys; sys.path.insert(0, \"{sim_dir}\"); from kubesim import kubeadm; "
        f"sys.exit(kubeadm.main(sys.argv[1:], \"{version}\"))' \"$@\"\n")
    (bin_dir / "kubeadm").chmod(0o755)


def test_kubeforges_reset_of_a_half_done_init_keeps_its_pki_and_clears_what_init_preflight_refuses(env: Path) -> None:
    """kubeforge's script (reset_keeping_pki) run by bash against the simulator's kubeadm, its absolute
    paths moved under the machine's root: kubeadm reset empties /etc/kubernetes/pki, the script keeps
    the CA kubeforge placed there, and init's preflight then passes."""
    import subprocess

    from kubeforge.plan.up.init_first_control_plane import reset_keeping_pki

    root = T.make_machine(str(env / "cp-1"), "cp-1", V33)
    (env / "init.yaml").write_text(init_config(V33))
    _write(root, "/etc/kubernetes/pki/ca.key", "the CA key kubeforge placed\n")
    _write(root, "/etc/kubernetes/admin.conf", "apiVersion: v1\nkind: Config\n")
    _write(root, "/etc/kubernetes/manifests/kube-apiserver.yaml", "kind: Pod\n")
    _write(root, "/etc/kubernetes/manifests/etcd.yaml", "kind: Pod\n")
    _write(root, "/var/lib/etcd/member/snap/db", "x")
    assert _init(root, env / "init.yaml")[0] == 1
    script = reset_keeping_pki().replace("/etc/kubernetes", f"{root}/etc/kubernetes") \
        .replace("/var/log/kubeforge", str(env / "log"))
    _sim_kubeadm_on_path(env / "bin", V33)
    run_env = dict(os.environ, PATH=f"{env / 'bin'}:{os.environ['PATH']}", KUBESIM_ROOT=root)
    res = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=run_env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert Path(root, "etc/kubernetes/pki/ca.key").read_text() == "the CA key kubeforge placed\n"
    assert not Path(root, "etc/kubernetes/pki.kubeforge-keep").exists()
    assert not os.listdir(Path(root, "etc/kubernetes/manifests")) and not os.listdir(Path(root, "var/lib/etcd"))
    rc, _, err = _init(root, env / "init.yaml")
    assert "[ERROR" not in err, err

    # an attempt killed between moving the PKI aside and putting it back: the next one restores it first
    key = Path(root, "etc/kubernetes/pki/ca.key").read_text()
    Path(root, "etc/kubernetes/pki").rename(Path(root, "etc/kubernetes/pki.kubeforge-keep"))
    res = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], env=run_env, capture_output=True, text=True)
    assert res.returncode == 0 and Path(root, "etc/kubernetes/pki/ca.key").read_text() == key


def test_a_control_plane_join_stopped_midway_leaves_an_unmarked_node_and_its_rerun_fails_preflight(
        ready_lab: Lab, monkeypatch) -> None:
    """kubeadm join --control-plane stopped while it waits for its control plane (after the kubelet
    registered the Node, the manifests were written): the Node is there but not marked a control plane
    (mark-control-plane is the join's last phase), and a rerun is refused by preflight as kubeadm's is."""
    from tests.sim.kubesim import kubeadm_phases

    ready_lab.kubeadm(ready_lab.cp, "init", "phase", "upload-certs", "--upload-certs",
                      "--config", str(ready_lab.base / "init.yaml"))
    cp2 = T.make_machine(str(ready_lab.base / "cp-2"), "cp-2", V33)
    join = ["join", "127.0.0.1:6443", "--token", "abcdef.0123456789abcdef", "--discovery-token-ca-cert-hash",
            ca_cert_hash(ready_lab.ca_pem), "--control-plane", "--certificate-key", "ab" * 32]

    def place_ca() -> None:  # what kubeforge's WritePki puts on every control plane
        for f in ("ca.crt", "ca.key"):
            _write(cp2, f"/etc/kubernetes/pki/{f}", Path(ready_lab.cp, "etc/kubernetes/pki", f).read_text())

    def stopped(*_a, **_k):
        raise KeyboardInterrupt

    place_ca()

    with monkeypatch.context() as m:
        m.setattr(kubeadm_phases, "wait_healthy", stopped)
        res = T.run("kubeadm", cp2, join, V33)
        assert res[0] == 130, res
    node = ready_lab.state()["nodes"]["cp-2"]
    assert "node-role.kubernetes.io/control-plane" not in node["labels"]
    assert os.path.exists(f"{cp2}/etc/kubernetes/manifests/kube-apiserver.yaml")
    rc, _, err = T.run("kubeadm", cp2, join, V33)
    assert rc == 1 and "[ERROR FileAvailable--etc-kubernetes-kubelet.conf]" in err, err
    # reset (which leaves the Node: it is kubectl's to delete), the same join runs to its end and marks it
    assert T.run("kubeadm", cp2, ["reset", "-f"], V33)[0] == 0
    assert "cp-2" in ready_lab.state()["nodes"]
    assert ready_lab.kubectl("delete", "node", "cp-2")[0] == 0
    place_ca()
    rc, out, err = T.run("kubeadm", cp2, join, V33)
    assert rc == 0 and "[mark-control-plane]" in out, err
    assert "node-role.kubernetes.io/control-plane" in ready_lab.state()["nodes"]["cp-2"]["labels"]
