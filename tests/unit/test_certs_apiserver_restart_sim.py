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

# the simulator's API server, controller manager and kubelets as processes: tens of seconds a test,
# and nothing a dependency floor changes (the lowest-versions stage leaves `slow` out)
pytestmark = pytest.mark.slow


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


def test_a_new_san_is_issued_by_kubeadm_after_the_old_pair_is_moved_aside_and_uploaded_for_later_joins(
        control_plane, tmp_path):
    """`up`'s re-issue steps (kubeforge.plan.certs.sans) with the configuration kubeforge renders, run
    by the simulator's kubeadm: the certificate on disk is kept by kubeadm until moved aside, the new
    one covers the new name and verifies against the CA, the ConfigMap later joins read has it, and a
    failed issue puts the previous pair back."""
    import dataclasses

    from kubeforge.plan.certs.sans import (
        APISERVER_CRT,
        ASIDE_DIR,
        apiserver_names,
        covers,
        reissue_command,
        upload_config,
    )
    from kubeforge.render.context import cluster_context
    from kubeforge.render.kubeadm import APISERVER_CERTS_PATH, render_apiserver_certs
    from tests.factories import make_cluster

    root, port, env = control_plane
    c = make_cluster(tmp_path, version=V.lstrip("v"), n_cp=1, n_workers=0)
    cp = dataclasses.replace(c.host("cp-1"), internal_address="127.0.0.1")
    c = dataclasses.replace(c, hosts=tuple(cp if h.name == "cp-1" else h for h in c.hosts),
                            endpoint=dataclasses.replace(c.endpoint, extra_sans=("api.example.test",)))

    def here(script: str) -> str:
        return on_machine(script, root, port).replace("/etc/kubeforge/", f"{root}/etc/kubeforge/")

    names = apiserver_names(c, cp)
    crt = Path(root + APISERVER_CRT)
    before = crt.read_bytes()
    assert run(here(covers(names).script), env).returncode != 0  # kubeadm's init certificate lacks the name
    config = Path(root + APISERVER_CERTS_PATH)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_bytes(render_apiserver_certs(cluster_context(c), cp).content)

    res = run(here(upload_config().script), env)
    assert res.returncode == 0, res.stderr
    cm = run(here("kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get configmap kubeadm-config -o yaml"), env)
    assert cm.returncode == 0 and "api.example.test" in cm.stdout, cm.stdout + cm.stderr

    res = run(here(reissue_command().script), env)
    assert res.returncode == 0, res.stderr
    assert crt.read_bytes() != before and Path(root + ASIDE_DIR, "apiserver.crt").read_bytes() == before
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(crt)],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:api.example.test" in sans and "IP Address:127.0.0.1" in sans, sans
    ok = subprocess.run(["openssl", "verify", "-CAfile", f"{root}/etc/kubernetes/pki/ca.crt", str(crt)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert run(here(covers(names).script), env).returncode == 0  # a resumed run skips the issue

    issued = crt.read_bytes()
    Path(root, "etc/kubernetes/pki/ca.key").unlink()  # an external CA: kubeadm cannot issue
    res = run(here(reissue_command().script), env)
    assert res.returncode == 1 and "the previous one is back in place" in res.stderr
    assert crt.read_bytes() == issued and Path(root, "etc/kubernetes/pki/apiserver.key").is_file()


def test_kubeadm_init_issues_the_api_server_certificate_for_the_node_name_and_the_service_names(control_plane):
    """As real kubeadm does (its default API server names): the node name, the kubernetes.* service
    names down to the cluster domain and the first IP of the service subnet, beside the advertise
    address. A control plane joined later is then covered by its own name without a re-issue."""
    root, _, _ = control_plane
    sans = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", root + "/etc/kubernetes/pki/apiserver.crt"],
                          capture_output=True, text=True, check=True).stdout
    for name in ("DNS:cp-1", "DNS:kubernetes.default.svc.cluster.local", "IP Address:10.96.0.1", "IP Address:127.0.0.1"):
        assert name in sans, sans
