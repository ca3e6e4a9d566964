"""`certs rotate-ca --ca kubernetes` run step by step against the simulator: one control plane after
`kubeadm init`, its kubelet a real process running the API server, the controller manager and the
scheduler; every step of the plan as kubeforge builds it (the files written where the transport
would put them, each script in real bash with its /etc/kubernetes, /var/lib/kubelet and /etc/kubeforge
paths moved under the machine's root and the simulator's kubectl on PATH, each gate polled). The
simulator checks what the real tools check (tests/sim/README.md): the API server's client CA read at
its start, the kubeconfigs' CA against the serving certificate, the controller manager's one-CA
signing file. After each phase the API answers through admin.conf, the node is Ready, the controller
manager and the scheduler are healthy; at the end every file is the new CA's and the store took it."""

from __future__ import annotations

import base64
import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from kubeforge.facts.kubeconfigs import parse, probe_command
from kubeforge.model import EtcdTopology
from kubeforge.pki import ca_rotation, crypto, ensure_pki
from kubeforge.plan.steps import GateStep, LocalStep, PutFileStep, RunStep
from kubeforge.workflows.certs_rotate import kubernetes_plan
from tests.factories import make_cluster
from tests.sim import testing as T
from tests.unit.test_certs_apiserver_restart_sim import control_plane  # noqa: F401 (a fixture)
from tests.unit.test_sim_kubelet_process import WORKLOAD, V, service  # noqa: F401 (a fixture)

# the simulator's API server, controller manager and kubelets as processes: tens of seconds a test,
# and nothing a dependency floor changes (the lowest-versions stage leaves `slow` out)
pytestmark = pytest.mark.slow

CNI = WORKLOAD.split("---")[0]  # the CNI's DaemonSet alone: no pod a kubelet restart would disturb


# kubeadm's ports of the controller manager and the scheduler -> the variable that moves them: the
# runner's network is shared, another test run on the box may hold 10257 (components.py)
COMPONENT_PORTS = {10257: "KUBESIM_KUBE_CONTROLLER_MANAGER_PORT", 10259: "KUBESIM_KUBE_SCHEDULER_PORT"}


@pytest.fixture(autouse=True)
def component_ports(monkeypatch):
    import socket

    for var in COMPONENT_PORTS.values():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            monkeypatch.setenv(var, str(s.getsockname()[1]))


class Machine:
    def __init__(self, root: str, port: str, env: dict, svc, address: str) -> None:
        self.root, self.port, self.env, self.svc, self.address = root, port, env, svc, address

    def moved(self, text: str) -> str:
        for d in ("/etc/kubernetes/", "/var/lib/kubelet/", "/etc/kubeforge/"):
            text = text.replace(d, f"{self.root}{d}")
        # a path written into the controller manager's manifest is the machine's own (the simulator
        # reads it under the root itself)
        text = text.replace(f"\\1{self.root}/", "\\1/").replace(f"-cert-file={self.root}/", "-cert-file=/")
        text = text.replace(f"{self.address}:6443", f"127.0.0.1:{self.port}").replace(":6443", f":{self.port}")
        for port in COMPONENT_PORTS:
            text = text.replace(f"127.0.0.1:{port}/", f"127.0.0.1:{self.env[COMPONENT_PORTS[port]]}/")
        return text

    def bash(self, cmd, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", self.moved(cmd.script)], env=self.env, capture_output=True,
                              input=cmd.stdin if isinstance(cmd.stdin, bytes) else None, timeout=timeout)

    def step(self, s) -> None:
        if isinstance(s, PutFileStep):
            path = Path(self.moved(s.file.path))
            path.write_bytes(s.file.content)
            path.chmod(s.file.mode)
        elif isinstance(s, LocalStep):
            s.fn()
        elif isinstance(s, RunStep):
            if s.unless is not None and self.bash(s.unless).returncode == 0:
                return
            if s.command.script == "systemctl restart kubelet":
                self.svc.restart()
                return
            res = self.bash(s.command)
            assert res.returncode == 0, (f"{s.title}: {res.stdout.decode()[-800:]} {res.stderr.decode()[-1500:]}"
                                         f"\nkubelet: {getattr(self.svc, 'last_stderr', '')[-2000:]}")
        elif isinstance(s, GateStep):
            deadline = time.time() + min(s.timeout_s, 90)
            while self.bash(s.probe).returncode != 0:
                assert time.time() < deadline, f"gate {s.title}: {s.what}"
                time.sleep(0.3)
        else:
            raise AssertionError(f"unexpected step {s!r}")

    def kubectl(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", f"{self.root}/etc/kubernetes/admin.conf", *argv],
                              env=self.env, capture_output=True, text=True, timeout=60)

    def healthy(self, port: int) -> bool:
        """kubeadm's port of a component (10257, 10259), where the test moved it."""
        moved = self.env[COMPONENT_PORTS[port]]
        return subprocess.run(["curl", "-fsSk", "--max-time", "5", f"https://127.0.0.1:{moved}/healthz"],
                              capture_output=True).returncode == 0

    def read(self, path: str) -> bytes:
        return Path(f"{self.root}{path}").read_bytes()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("stop_after", [None, "swap-pairs"], ids=["uninterrupted", "stopped-in-phase-2-and-run-again"])
def test_the_rotation_runs_through_every_phase_on_the_simulator_with_the_api_and_its_components_up(
        control_plane, service, tmp_path, stop_after):  # noqa: F811 (fixtures)
    """``stop_after``: the run stops right after phase 2's certificate swap on the control plane (its
    API server not yet restarted); a new run planned from the store's record (phase 1 done) goes on."""
    root, port, env = control_plane
    _, svc = service
    cluster = make_cluster(tmp_path / "kf", topology=EtcdTopology.STACKED, n_cp=1, n_workers=0)
    ensure_pki(cluster)
    cp = cluster.host("cp-1")
    m = Machine(root, port, env, svc, cp.internal_address)
    # the store's cluster CA is the one kubeadm init used on the machine (kubeforge places it before init)
    for name in ("ca.crt", "ca.key"):
        (cluster.pki_dir / name).write_bytes(m.read(f"/etc/kubernetes/pki/{name}"))
    assert subprocess.run(["kubectl", "--kubeconfig", f"{root}/etc/kubernetes/admin.conf", "apply", "-f", "-"],
                          input=CNI, env=env, capture_output=True, text=True).returncode == 0
    assert m.kubectl("wait", "--for=condition=Ready", "node/cp-1", "--timeout=30s").returncode == 0
    from tests.unit.test_sim_kubelet_process import until

    until(lambda: m.healthy(10257) and m.healthy(10259), 30, "the controller manager and the scheduler healthy")
    probe = subprocess.run(["bash", "-c", m.moved(probe_command().script)], capture_output=True, text=True, check=True)
    kubeconfigs = {"cp-1": parse("cp-1", probe.stdout)}
    sans = sorted(crypto.cert_sans(crypto.load_cert(m.read("/etc/kubernetes/pki/apiserver.crt"))))
    r = ca_rotation.start(cluster, ca="kubernetes", apiserver_sans={"cp-1": sans}, kubelets=["cp-1"])
    old = r.old.kube_ca.cert_pem
    plan = kubernetes_plan(cluster, r, kubeconfigs, ["cp-1"], [])
    started = time.monotonic()
    phases = list(plan.phases)
    while phases:
        phase = phases.pop(0)
        stopped = False
        for lane in phase.lanes:
            for s in lane.steps:
                m.step(s)
                if stop_after and phase.name.startswith("Reissue") and s.key.startswith(stop_after):
                    stopped = True
                    break
            if stopped:
                break
        if stopped:
            # interrupted: a new run reads the store's record (phase 1 done) and plans what is left
            stop_after = None
            again = ca_rotation.start(cluster, ca="kubernetes", apiserver_sans={"cp-1": sans}, kubelets=["cp-1"])
            assert again.state.phases_done == 1 and again.new_ca.cert_pem == r.new_ca.cert_pem
            probe = subprocess.run(["bash", "-c", m.moved(probe_command().script)], capture_output=True, text=True,
                                   check=True)
            assert {"cp-1": parse("cp-1", probe.stdout)} == kubeconfigs  # the names are read again, the same
            phases = [p for p in kubernetes_plan(cluster, again, kubeconfigs, ["cp-1"], []).phases if not p.is_noop]
            assert phases[0].name == "ReissueClusterLeavesOnControlPlanes"
            continue
        if phase.name.startswith("Record"):
            # between phases: the API through admin.conf, the node Ready, both components healthy
            assert m.kubectl("get", "--raw", "/readyz").returncode == 0, phase.name
            ready = m.kubectl("wait", "--for=condition=Ready", "node/cp-1", "--timeout=30s")
            as_kubelet = subprocess.run(["kubectl", "--kubeconfig", f"{root}/etc/kubernetes/kubelet.conf", "get", "node",
                                         "cp-1", "--server", f"https://127.0.0.1:{port}"], env=env, capture_output=True,
                                        text=True)
            if ready.returncode != 0:
                svc.restart()  # its output is read when it exits
            assert ready.returncode == 0, (phase.name, as_kubelet.stderr, svc.last_stderr[-3000:])
            assert as_kubelet.returncode == 0, (phase.name, as_kubelet.stderr)  # kubelet.conf against its API server
            assert m.healthy(10257) and m.healthy(10259), phase.name
    print(f"rotation on the simulator: {time.monotonic() - started:.1f} s")
    new = r.new_ca.cert_pem
    assert m.read("/etc/kubernetes/pki/ca.crt") == new and m.read("/etc/kubernetes/pki/ca.key") == r.new_ca.key_pem
    for conf in ("admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"):
        data = re.search(rb"certificate-authority-data: (\S+)", m.read(f"/etc/kubernetes/{conf}")).group(1)
        assert base64.b64decode(data) == new, conf
    assert crypto.signed_by(crypto.load_cert(m.read("/etc/kubernetes/pki/apiserver.crt")), r.new_ca.cert)
    assert not crypto.signed_by(crypto.load_cert(m.read("/etc/kubernetes/pki/apiserver.crt")), crypto.load_cert(old))
    manifest = m.read("/etc/kubernetes/manifests/kube-controller-manager.yaml").decode()
    assert "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt" in manifest
    assert not Path(f"{root}/etc/kubernetes/pki/kubeforge-rotation-signing-ca.pem").exists()
    assert (cluster.pki_dir / "ca.crt").read_bytes() == new and not ca_rotation.rotation_dir(cluster, "kubernetes").exists()
    # after the commit: a kubeconfig trusting the old CA alone no longer reaches the API server
    stale = m.read("/etc/kubernetes/admin.conf").replace(data, base64.b64encode(old))
    (tmp_path / "stale.conf").write_bytes(stale)
    refused = subprocess.run(["kubectl", "--kubeconfig", str(tmp_path / "stale.conf"), "get", "--raw", "/readyz"],
                             env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "certificate signed by unknown authority" in refused.stderr
    assert m.kubectl("get", "--raw", "/kubesim/violations").stdout.strip() in ("[]", "")
    # the whole plan again (a repeated run after the commit): every guarded step finds it done
    again = kubernetes_plan(cluster, replace(r, state=replace(r.state, phases_done=3)), kubeconfigs, ["cp-1"], [])
    assert [p.name for p in again.phases if not p.is_noop] == ["RecordDropOldClusterCA"]


@pytest.fixture
def with_worker(control_plane, service, tmp_path):  # noqa: F811 (fixtures)
    """cp-1 as above and worker-1 joined to it (`kubeadm join` with the printed command), its kubelet a
    real process of its own; the kubeforge cluster of the two with the machine's CA in its store."""
    root, port, env = control_plane
    _, svc = service
    rc, out, err = T.run("kubeadm", root, ["token", "create", "--print-join-command"], V)
    assert rc == 0, err
    w = T.make_machine(str(tmp_path / "worker-1"), "worker-1", V)
    cri = T.RuntimeSocket(w)
    wenv = dict(env, KUBESIM_ROOT=w)
    wsvc = T.KubeletService(w, V, wenv)
    try:
        rc, _, err = T.run("kubeadm", w, ["join", *out.split()[2:], "--node-name", "worker-1"], V)
        assert rc == 0, err
        cluster = make_cluster(tmp_path / "kf", topology=EtcdTopology.STACKED, n_cp=1, n_workers=1)
        ensure_pki(cluster)
        cp = Machine(root, port, env, svc, cluster.host("cp-1").internal_address)
        worker = Machine(w, port, wenv, wsvc, cluster.host("worker-1").internal_address)
        for name in ("ca.crt", "ca.key"):
            (cluster.pki_dir / name).write_bytes(cp.read(f"/etc/kubernetes/pki/{name}"))
        assert subprocess.run(["kubectl", "--kubeconfig", f"{root}/etc/kubernetes/admin.conf", "apply", "-f", "-"],
                              input=CNI, env=env, capture_output=True, text=True).returncode == 0
        from tests.unit.test_sim_kubelet_process import until

        until(lambda: cp.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=5s").returncode == 0, 60,
              "both nodes Ready")
        until(lambda: cp.healthy(10257) and cp.healthy(10259), 30, "the controller manager and the scheduler healthy")
        yield cluster, {"cp-1": cp, "worker-1": worker}
    finally:
        wsvc.stop()
        cri.close()


def two_node_plan(cluster, machines):
    read = {}
    for name, m in machines.items():
        probe = subprocess.run(["bash", "-c", m.moved(probe_command().script)], capture_output=True, text=True,
                               check=True)
        read[name] = parse(name, probe.stdout)
    cp = machines["cp-1"]
    sans = sorted(crypto.cert_sans(crypto.load_cert(cp.read("/etc/kubernetes/pki/apiserver.crt"))))
    r = ca_rotation.start(cluster, ca="kubernetes", apiserver_sans={"cp-1": sans}, kubelets=["cp-1", "worker-1"])
    return r, kubernetes_plan(cluster, r, read, ["cp-1"], ["worker-1"])


def as_kubelet(m: Machine, node: str) -> subprocess.CompletedProcess:
    """What the kubelet of ``node`` gets from the API with its kubelet.conf (CA, client certificate)."""
    return subprocess.run(["kubectl", "--kubeconfig", f"{m.root}/etc/kubernetes/kubelet.conf", "get", "node", node],
                          env=m.env, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(600)
def test_with_a_worker_every_phase_keeps_both_kubelets_talking_to_the_api(with_worker):
    cluster, machines = with_worker
    r, plan = two_node_plan(cluster, machines)
    cp = machines["cp-1"]
    started = time.monotonic()
    for phase in plan.phases:
        for lane in phase.lanes:
            for s in lane.steps:
                machines.get(s.host, cp).step(s)
        if phase.name.startswith("Record"):
            for node, m in machines.items():
                res = as_kubelet(m, node)
                assert res.returncode == 0, (phase.name, node, res.stderr)
            assert cp.kubectl("wait", "--for=condition=Ready", "nodes", "--all", "--timeout=30s").returncode == 0
    print(f"rotation with a worker on the simulator: {time.monotonic() - started:.1f} s")
    worker = machines["worker-1"]
    assert worker.read("/etc/kubernetes/pki/ca.crt") == r.new_ca.cert_pem
    conf = worker.read("/etc/kubernetes/kubelet.conf")
    assert base64.b64decode(re.search(rb"certificate-authority-data: (\S+)", conf).group(1)) == r.new_ca.cert_pem
    client = base64.b64decode(re.search(rb"client-certificate-data: (\S+)", conf).group(1))
    assert crypto.signed_by(crypto.load_cert(client), r.new_ca.cert)
    # kubeadm join's discovery now hands out the new CA and pins it (cluster-info was applied)
    rc, out, _ = T.run("kubeadm", cp.root, ["token", "create", "--print-join-command"], V)
    assert rc == 0 and crypto.spki_sha256(r.new_ca.cert) in out


@pytest.mark.timeout(600)
def test_the_api_servers_new_certificate_before_the_workers_trust_the_new_ca_cuts_their_kubelets_off(with_worker):
    """The order matters and the simulator holds it: phase 1 on the control plane only, then phase 2
    there (its API server now serves a certificate from the new CA) while the worker's kubelet.conf
    still trusts the old CA alone: that kubelet can no longer verify the API server; the gate kubeforge
    puts after each kubelet restart says so. Phase 1 on the worker, then, mends it."""
    cluster, machines = with_worker
    r, plan = two_node_plan(cluster, machines)
    cp, worker = machines["cp-1"], machines["worker-1"]
    by_name = {p.name: p for p in plan.phases}
    for name in ("TrustBothClusterCAsOnControlPlanes", "ReissueClusterLeavesOnControlPlanes"):
        for s in by_name[name].lanes[0].steps:
            cp.step(s)
    res = as_kubelet(worker, "worker-1")
    assert res.returncode != 0 and "certificate signed by unknown authority" in res.stderr, res.stderr
    gate = next(s for s in by_name["TrustBothClusterCAsOnWorkers"].lanes[0].steps if s.key.startswith("gate-kubelet-conf"))
    assert worker.bash(gate.probe).returncode != 0
    for s in by_name["TrustBothClusterCAsOnWorkers"].lanes[0].steps:
        worker.step(s) if s.host == "worker-1" else cp.step(s)
    assert as_kubelet(worker, "worker-1").returncode == 0
