"""``certs renew``'s kube-apiserver restart script against the simulator's kubelet (a real process
that runs the API server static pod as its own process): the pod goes away when its manifest is
moved aside and comes back as a new process when it returns, and the readiness probe kubeforge gates
on answers again. The script runs in real bash; only its /etc/kubernetes paths are moved under the
simulated machine's root and kubectl is the simulator's."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from kubeforge.plan.certs.renew import APISERVER_MANIFEST, api_ready, kubeadm_renew, restart_apiserver
from tests.sim import testing as T
from tests.sim.kubesim import staticpod
from tests.unit.test_sim_kubelet_process import INIT, V, service, until  # noqa: F401 (service: a fixture)


@pytest.fixture
def control_plane(service, tmp_path: Path):
    """cp-1 after `kubeadm init`, its kubelet a real process, and a bin/ with the simulator's kubectl and kubeadm."""
    root, _svc = service
    port = os.environ["KUBESIM_API_PORT"]
    (tmp_path / "init.yaml").write_text(INIT)
    rc, _, err = T.run("kubeadm", root, ["init", "--config", str(tmp_path / "init.yaml")], V)
    assert rc == 0, err
    bindir = tmp_path / "bin"
    bindir.mkdir()
    sim = Path(T.__file__).resolve().parent
    for tool in ("kubectl", "kubeadm"):
        wrapper = bindir / tool
        wrapper.write_text(f"#!{sys.executable} -I\nimport sys\nsys.path.insert(0, {str(sim)!r})\n"
                           f"from kubesim import {tool}\nsys.exit({tool}.main(sys.argv[1:], {V!r}))\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = dict(os.environ, KUBESIM_ROOT=root, PATH=f"{bindir}:{os.environ['PATH']}")
    return root, port, env


def on_machine(script: str, root: str, port: str) -> str:
    return script.replace("/etc/kubernetes/", f"{root}/etc/kubernetes/").replace(":6443", f":{port}")


def run(script: str, env: dict, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


def test_moving_the_manifest_out_and_back_restarts_the_api_server_and_readyz_answers_again(control_plane):
    root, port, env = control_plane
    cp = SimpleNamespace(internal_address="127.0.0.1")
    ready = on_machine(api_ready(cp).script, root, port)
    until(lambda: run(ready, env).returncode == 0, what="the API ready after init")
    with T.host.use_root(root):
        before = staticpod.running_pid()
    assert before is not None
    res = run(on_machine(restart_apiserver(cp).script, root, port), env)
    assert res.returncode == 0, res.stderr
    assert Path(root + APISERVER_MANIFEST).is_file()
    until(lambda: run(ready, env).returncode == 0, what="the API ready after the restart")
    with T.host.use_root(root):
        after = staticpod.running_pid()
    assert after is not None and after != before  # a new API server process: it read its files again


def test_a_run_stopped_with_the_manifest_aside_puts_it_back(control_plane):
    root, port, env = control_plane
    from kubeforge.plan.certs.renew import APISERVER_ASIDE

    cp = SimpleNamespace(internal_address="127.0.0.1")
    os.replace(root + APISERVER_MANIFEST, root + APISERVER_ASIDE)  # as an interrupted run leaves it
    res = run(on_machine(restart_apiserver(cp).script, root, port), env)
    assert res.returncode == 0, res.stderr
    assert Path(root + APISERVER_MANIFEST).is_file() and not Path(root + APISERVER_ASIDE).exists()
    until(lambda: run(on_machine(api_ready(cp).script, root, port), env).returncode == 0, what="the API ready")


def test_kubeadm_renew_step_renews_and_fails_where_kubeadm_only_says_it_could_not(control_plane):
    root, _port, env = control_plane
    crt = Path(root, "etc/kubernetes/pki/apiserver.crt")
    before = crt.read_bytes()
    res = run(kubeadm_renew(["apiserver", "admin.conf"]).script, env)
    assert res.returncode == 0, res.stderr
    assert crt.read_bytes() != before
    Path(root, "etc/kubernetes/pki/ca.key").unlink()  # an external CA: kubeadm exits 0 having renewed nothing
    res = run(kubeadm_renew(["apiserver-kubelet-client"]).script, env)
    assert res.returncode == 1 and "kubeadm did not renew apiserver-kubelet-client" in res.stderr
