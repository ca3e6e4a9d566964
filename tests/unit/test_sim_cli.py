"""kubeadm, kubectl and kubelet stand-ins driven as commands on simulated machines inside this process."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.sim import testing as T
from tests.sim.kubesim import kubelet
from tests.sim.kubesim.pki import ca_cert_hash

V33, V34, V35 = "v1.33.6", "v1.34.2", "v1.35.1"
TOKEN = "abcdef.0123456789abcdef"
CNI = """apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: calico-node
  namespace: kube-system
spec:
  template:
    metadata:
      labels: {k8s-app: calico-node}
    spec:
      tolerations:
      - operator: Exists
"""
APP = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web}
    spec:
      volumes:
      - name: scratch
        emptyDir: {}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
"""


def init_config(version: str) -> str:
    return f"""apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
bootstrapTokens:
- token: {TOKEN}
localAPIEndpoint:
  advertiseAddress: 127.0.0.1
certificateKey: {"ab" * 32}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: {version.lstrip("v")}
controlPlaneEndpoint: 127.0.0.1:6443
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("KUBESIM_API_PORT", str(port))
    monkeypatch.setenv("KUBESIM_WAIT_SECONDS", "5")
    monkeypatch.setenv("KUBESIM_EVICT_RETRY_SECONDS", "0.1")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return tmp_path


class Lab:
    """One control plane and one worker, each a root directory with a kubelet thread."""

    def __init__(self, base: Path, version: str = V33) -> None:
        self.base, self.version = base, version
        self.cp = T.make_machine(str(base / "cp-1"), "cp-1", version)
        self.w = T.make_machine(str(base / "worker-1"), "worker-1", version)
        pki = base / "cp-1/etc/kubernetes/pki"
        pki.mkdir(parents=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=kubernetes", "-keyout", f"{pki}/ca.key", "-out", f"{pki}/ca.crt"],
                       check=True, capture_output=True)
        self.ca_pem = (pki / "ca.crt").read_text()
        (base / "init.yaml").write_text(init_config(version))
        self.kubelets = [T.KubeletThread(self.cp, version)]
        self.kc = str(base / "cp-1/etc/kubernetes/admin.conf")

    def kubeadm(self, root: str, *argv: str, version: str | None = None, stdin: str = ""):
        return T.run("kubeadm", root, list(argv), version or self.version, stdin)

    def kubectl(self, *argv: str):
        return T.run("kubectl", self.cp, list(argv) + ["--kubeconfig", self.kc], self.version)

    def init(self):
        rc, out, err = self.kubeadm(self.cp, "init", "--config", str(self.base / "init.yaml"), "--upload-certs")
        assert rc == 0, err
        return out

    def join_worker(self, ca_hash: str | None = None):
        out = self.kubeadm(self.w, "join", "127.0.0.1:6443", "--token", TOKEN,
                           "--discovery-token-ca-cert-hash", ca_hash or ca_cert_hash(self.ca_pem))
        if out[0] == 0:
            self.kubelets.append(T.KubeletThread(self.w, self.version))
        return out

    def state(self) -> dict:
        rc, out, err = self.kubectl("sim", "state")
        assert rc == 0, err
        return json.loads(out)

    def wait_ready(self, *names: str) -> None:
        rc, out, err = self.kubectl("wait", "--for=condition=Ready", *[f"node/{n}" for n in names], "--timeout=5s")
        assert rc == 0, err

    def close(self) -> None:
        for k in self.kubelets:
            k.stop()


@pytest.fixture
def simlab(env: Path):
    # not named `lab`: that is the machine lab's fixture, and a test asking for it is a lab test,
    # run on the lab's xdist worker in turn (tests/lab/fixtures.py); these need no machine
    simlab = Lab(env)
    yield simlab
    simlab.close()


@pytest.fixture
def ready_lab(simlab: Lab) -> Lab:
    simlab.init()
    assert simlab.join_worker()[0] == 0
    (simlab.base / "cni.yaml").write_text(CNI)
    assert simlab.kubectl("apply", "-f", str(simlab.base / "cni.yaml"))[0] == 0
    simlab.wait_ready("cp-1", "worker-1")
    return simlab


def test_version_commands_print_the_package_version(env: Path) -> None:
    assert T.run("kubeadm", str(env), ["version", "-o", "short"], V34)[1] == "v1.34.2\n"
    client = json.loads(T.run("kubectl", str(env), ["version", "--client", "-o", "json"], V34)[1])
    assert client["clientVersion"]["gitVersion"] == V34


def test_kubelet_crash_loops_until_its_config_exists(env: Path, capsys: pytest.CaptureFixture) -> None:
    with T.host.use_root(str(env)):
        assert kubelet.main([], V34) == 1
        assert kubelet.main(["--version"], V34) == 0
    assert "failed to load kubelet config file, path: /var/lib/kubelet/config.yaml" in capsys.readouterr().err


def test_kubectl_without_a_kubeconfig_cannot_reach_a_server(env: Path) -> None:
    rc, _, err = T.run("kubectl", str(env), ["get", "nodes"], V34)
    assert rc == 1 and "The connection to the server localhost:8080 was refused" in err


def test_init_keeps_the_provided_ca_and_writes_kubeconfigs_kubelet_config_and_manifests(simlab: Lab) -> None:
    out = simlab.init()
    cp = Path(simlab.cp)
    assert (cp / "etc/kubernetes/pki/ca.crt").read_text() == simlab.ca_pem
    assert f"--discovery-token-ca-cert-hash {ca_cert_hash(simlab.ca_pem)}" in out
    for f in ("admin.conf", "super-admin.conf", "kubelet.conf"):
        assert (cp / "etc/kubernetes" / f).stat().st_mode & 0o777 == 0o600
    assert "image: registry.k8s.io/kube-apiserver:v1.33.6" in (cp / "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert (cp / "etc/kubernetes/manifests/etcd.yaml").exists()  # stacked: no external etcd configured
    assert (cp / "var/lib/kubelet/config.yaml").exists()
    assert simlab.kubectl("get", "nodes")[1].splitlines()[1].split()[:2] == ["cp-1", "NotReady"]


def test_a_second_init_is_refused_by_preflight(simlab: Lab) -> None:
    simlab.init()
    rc, _, err = simlab.kubeadm(simlab.cp, "init", "--config", str(simlab.base / "init.yaml"))
    assert rc == 1 and "[ERROR FileAvailable--etc-kubernetes-admin.conf]" in err


@pytest.mark.parametrize("breakage,check", [
    ({"swap": True}, "[ERROR Swap]: running with swap on is not supported"),
    ({"containerd": False}, "[ERROR CRI]: container runtime is not running"),
    ({"kubelet_version": V34}, "[ERROR KubeletVersion]"),
])
def test_init_preflight_fails_on_a_broken_machine(env: Path, breakage: dict, check: str) -> None:
    root = T.make_machine(str(env / "bad"), "bad", V33, **breakage)
    (env / "init.yaml").write_text(init_config(V33))
    rc, _, err = T.run("kubeadm", root, ["init", "--config", str(env / "init.yaml")], V33)
    assert rc == 1 and check in err and not os.path.exists(f"{root}/etc/kubernetes/admin.conf")


def test_join_with_the_wrong_ca_hash_is_refused_and_writes_nothing(simlab: Lab) -> None:
    simlab.init()
    rc, _, err = simlab.join_worker(ca_hash="sha256:" + "0" * 64)
    assert rc == 1 and "none of the public keys" in err
    assert not os.path.exists(f"{simlab.w}/etc/kubernetes/kubelet.conf")
    assert "none of the public keys" in simlab.state()["violations"][-1]["message"]


def test_nodes_become_ready_after_the_cni_and_report_json_like_kubectl(ready_lab: Lab) -> None:
    nodes = json.loads(ready_lab.kubectl("get", "nodes", "-o", "json")[1])["items"]
    ready = {n["metadata"]["name"]: n["status"]["conditions"][0]["status"] for n in nodes}
    assert ready == {"cp-1": "True", "worker-1": "True"}
    assert {n["status"]["nodeInfo"]["kubeletVersion"] for n in nodes} == {V33}


def test_drain_refuses_emptydir_pods_then_blocks_on_the_pdb_until_the_timeout(ready_lab: Lab) -> None:
    (ready_lab.base / "app.yaml").write_text(APP)
    assert ready_lab.kubectl("apply", "-f", str(ready_lab.base / "app.yaml"))[0] == 0
    rc, _, err = ready_lab.kubectl("drain", "worker-1", "--ignore-daemonsets", "--timeout=1s")
    assert rc == 1 and "cannot delete Pods with local storage (use --delete-emptydir-data to override)" in err
    rc, out, err = ready_lab.kubectl("drain", "worker-1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=1s")
    assert rc == 1
    assert '-n "default" (will retry after 5s): Cannot evict pod as it would violate the pod\'s disruption budget.' in err
    assert "global timeout reached: 1s" in err
    assert ready_lab.state()["nodes"]["worker-1"]["unschedulable"] is True


BARE = """apiVersion: v1
kind: Pod
metadata:
  name: debug
spec:
  nodeName: worker-1
  terminationGracePeriodSeconds: 1
"""


def test_drain_refuses_a_bare_pod_without_force_and_with_it_waits_out_its_grace_period(ready_lab: Lab) -> None:
    (ready_lab.base / "bare.yaml").write_text(BARE)
    assert ready_lab.kubectl("apply", "-f", str(ready_lab.base / "bare.yaml")) == (0, "pod/debug created\n", "")
    rc, _, err = ready_lab.kubectl("drain", "worker-1", "--ignore-daemonsets", "--timeout=5s")
    assert rc == 1 and "cannot delete Pods that declare no controller (use --force to override): default/debug" in err
    assert "default/debug" in ready_lab.state()["pods"]
    started = time.monotonic()
    rc, out, err = ready_lab.kubectl("drain", "worker-1", "--ignore-daemonsets", "--force", "--timeout=5s")
    assert rc == 0, err
    assert time.monotonic() - started >= 1.0  # the pod's terminationGracePeriodSeconds
    assert "evicting pod default/debug\npod/debug evicted\nnode/worker-1 drained\n" in out
    assert "default/debug" not in ready_lab.state()["pods"]  # a bare pod is gone for good


def test_drain_fails_at_its_timeout_while_a_pod_is_still_terminating(ready_lab: Lab) -> None:
    (ready_lab.base / "bare.yaml").write_text(BARE.replace("terminationGracePeriodSeconds: 1", "terminationGracePeriodSeconds: 60"))
    assert ready_lab.kubectl("apply", "-f", str(ready_lab.base / "bare.yaml"))[0] == 0
    rc, _, err = ready_lab.kubectl("drain", "worker-1", "--ignore-daemonsets", "--force", "--timeout=1s")
    assert rc == 1  # the cap (KUBESIM_GRACE_CAP_SECONDS, 2 s by default) outlasts the 1 s timeout
    assert 'error when waiting for pod "debug" in namespace "default" to terminate: global timeout reached: 1s' in err


def _kubeforge_drain(simlab: Lab, force_bare_pods: bool) -> subprocess.CompletedProcess:
    """kubeforge's drain step, its script run as on the first control plane against the simulator."""
    from kubeforge.model.cluster import UpgradePolicy
    from kubeforge.plan.upgrade.commands import drain

    step = drain("cp-1", "worker-1", UpgradePolicy(drain_timeout_s=5, force_bare_pods=force_bare_pods), key="d")
    return subprocess.run(["bash"], input=as_run(step.command, simlab.kc), env=_kubectl_on_path(simlab, os.environ["KUBESIM_API_PORT"]),
                          capture_output=True, text=True)


def test_kubeforges_drain_refuses_a_bare_pod_naming_it_and_the_option_and_uncordons(ready_lab: Lab) -> None:
    (ready_lab.base / "bare.yaml").write_text(BARE)
    assert ready_lab.kubectl("apply", "-f", str(ready_lab.base / "bare.yaml"))[0] == 0
    res = _kubeforge_drain(ready_lab, force_bare_pods=False)
    assert res.returncode == 1
    assert ("kubeforge: worker-1 runs pods no controller manages (default/debug): a drain deletes them for good"
            in res.stderr and "--force-bare-pods" in res.stderr), res.stderr
    assert ready_lab.state()["nodes"]["worker-1"]["unschedulable"] is False  # uncordoned again
    assert "default/debug" in ready_lab.state()["pods"]
    res = _kubeforge_drain(ready_lab, force_bare_pods=True)
    assert res.returncode == 0, res.stderr
    assert "pod/debug evicted" in res.stdout and "default/debug" not in ready_lab.state()["pods"]


def test_drain_without_ignore_daemonsets_names_the_daemonset_pods(ready_lab: Lab) -> None:
    rc, _, err = ready_lab.kubectl("drain", "worker-1")
    assert rc == 1 and "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/calico-node" in err


def test_upgrade_rules_through_the_commands(ready_lab: Lab) -> None:
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V35, "--yes", version=V35)
    assert rc == 1 and "kubeadm can upgrade only 1 minor version at a time" in err
    rc, _, err = ready_lab.kubeadm(ready_lab.w, "upgrade", "node", version=V34)
    assert rc == 1 and 'run "kubeadm upgrade apply" on the first control plane' in err
    rc, _, err = ready_lab.kubeadm(ready_lab.w, "upgrade", "apply", V34, "--yes", version=V34)
    assert rc == 1 and "failed to load admin kubeconfig" in err
    rc, out, _ = ready_lab.kubeadm(ready_lab.cp, "upgrade", "plan", version=V34)
    assert rc == 0 and f"kubeadm upgrade apply {V34}" in out
    rc, out, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, "--yes", version=V34)
    assert rc == 0 and 'SUCCESS! Your cluster was upgraded to "v1.34.2"' in out, err
    manifest = Path(ready_lab.cp, "etc/kubernetes/manifests/kube-apiserver.yaml").read_text()
    assert "kube-apiserver:v1.34.2" in manifest
    assert ready_lab.kubeadm(ready_lab.w, "upgrade", "node", version=V34)[0] == 0
    st = ready_lab.state()
    assert st["clusterVersion"] == V34 and st["nodes"]["worker-1"]["kubeletConfigVersion"] == V34
    assert [v["message"] for v in st["violations"]] == [
        'Specified version to upgrade to "v1.35.1" is too high; kubeadm can upgrade only 1 minor version at a time',
        'kubeadm version "v1.34.2" differs from the cluster version "v1.33.6": run "kubeadm upgrade apply" on the '
        'first control plane before "kubeadm upgrade node", with matching kubeadm']


def test_upgrade_apply_without_yes_needs_a_confirmation(ready_lab: Lab) -> None:
    rc, _, err = ready_lab.kubeadm(ready_lab.cp, "upgrade", "apply", V34, version=V34, stdin="n\n")
    assert rc == 1 and "won't proceed" in err and ready_lab.state()["clusterVersion"] == V33


def test_reset_wipes_what_kubeadm_wrote_but_leaves_the_node_object_for_kubectl_delete(ready_lab: Lab) -> None:
    rc, out, err = ready_lab.kubeadm(ready_lab.w, "reset", "-f")
    assert rc == 0, err
    w = Path(ready_lab.w)
    assert not (w / "etc/kubernetes/kubelet.conf").exists() and not any((w / "var/lib/kubelet").iterdir())
    assert "worker-1" in ready_lab.state()["nodes"]  # real kubeadm reset never deletes the Node
    assert ready_lab.kubectl("delete", "node", "worker-1") == (0, 'node "worker-1" deleted\n', "")
    assert "worker-1" not in ready_lab.state()["nodes"]
    rc, _, err = ready_lab.kubectl("get", "node", "worker-1")
    assert rc == 1 and err == 'Error from server (NotFound): nodes "worker-1" not found\n'
    assert ready_lab.kubectl("delete", "node", "worker-1")[0] == 1
    assert ready_lab.kubectl("delete", "node", "worker-1", "--ignore-not-found") == (0, "", "")


def as_run(command, kubeconfig: str) -> str:
    """The bash program kubeforge's transport sends for ``command`` (``set -euo pipefail`` and all),
    with the machine's admin.conf path pointing into the simulated machine's root."""
    from kubeforge.transport.script import script_for

    return script_for(dataclasses.replace(command, script=command.script.replace("/etc/kubernetes/admin.conf", kubeconfig)))


def _kubectl_on_path(simlab: Lab, port: str) -> dict[str, str]:
    return T.kubectl_on_path(str(simlab.base / "bin"), simlab.cp, simlab.version, port)


def test_resets_node_absent_guard_skips_only_on_notfound_never_on_an_unreachable_api(ready_lab: Lab) -> None:
    from kubeforge.plan.reset import node_absent

    guard = as_run(node_absent("worker-1"), ready_lab.kc)
    live = _kubectl_on_path(ready_lab, os.environ["KUBESIM_API_PORT"])
    got = subprocess.run(["sh", "-c", f"kubectl --kubeconfig {ready_lab.kc} get node worker-1 -o name"], env=live,
                         capture_output=True, text=True)
    assert got.stdout == "node/worker-1\n", got.stderr  # the shim really reaches the API server
    assert subprocess.run(["bash"], input=guard, text=True, env=live).returncode == 1  # the node is there: delete it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = str(s.getsockname()[1])
    # kubectl fails (connection refused): the guard must not call the node gone
    assert subprocess.run(["bash"], input=guard, text=True, env=_kubectl_on_path(ready_lab, closed)).returncode == 1
    assert ready_lab.kubectl("delete", "node", "worker-1")[0] == 0
    assert subprocess.run(["bash"], input=guard, text=True, env=live).returncode == 0  # NotFound: nothing left to delete


def test_kubectl_label_taint_cordon_and_uncordon(ready_lab: Lab) -> None:
    assert ready_lab.kubectl("label", "node", "worker-1", "pool=general")[1] == "node/worker-1 labeled\n"
    assert ready_lab.kubectl("taint", "node", "worker-1", "dedicated=gpu:NoSchedule")[0] == 0
    assert ready_lab.kubectl("cordon", "worker-1")[1] == "node/worker-1 cordoned\n"
    table = ready_lab.kubectl("get", "nodes")[1]
    assert "Ready,SchedulingDisabled" in table
    assert ready_lab.kubectl("uncordon", "worker-1")[1] == "node/worker-1 uncordoned\n"
    node = ready_lab.state()["nodes"]["worker-1"]
    assert node["labels"]["pool"] == "general" and node["taints"] == [{"key": "dedicated", "effect": "NoSchedule",
                                                                       "value": "gpu"}]


def test_api_server_answers_tls_health_checks_and_refuses_plain_http_like_go(ready_lab: Lab) -> None:
    import socket
    import ssl
    import urllib.request

    port = os.environ["KUBESIM_API_PORT"]
    ctx = ssl.create_default_context(cafile=f"{ready_lab.cp}/etc/kubernetes/pki/ca.crt")
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=ctx, timeout=5) as r:
        assert r.status == 200 and r.read() == b"ok"
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.0 400 Bad Request") and b"Client sent an HTTP request to an HTTPS server." in answer


def test_token_create_takes_the_token_from_the_init_configuration(ready_lab: Lab) -> None:
    other = "zyxwvu.0123456789abcdef"
    (ready_lab.base / "init2.yaml").write_text(init_config(V33).replace(TOKEN, other))
    rc, out, err = ready_lab.kubeadm(ready_lab.cp, "token", "create", "--config", str(ready_lab.base / "init2.yaml"))
    assert rc == 0 and out.strip() == other, err
    third = T.make_machine(str(ready_lab.base / "worker-2"), "worker-2", V33)
    rc, _, err = T.run("kubeadm", third, ["join", "127.0.0.1:6443", "--token", other,
                                          "--discovery-token-ca-cert-hash", ca_cert_hash(ready_lab.ca_pem)], V33)
    assert rc == 0, err
    assert "worker-2" in ready_lab.state()["nodes"]


def test_upload_certs_phase_lets_a_second_control_plane_join_with_the_configured_key(ready_lab: Lab) -> None:
    rc, out, err = ready_lab.kubeadm(ready_lab.cp, "init", "phase", "upload-certs", "--upload-certs",
                                     "--config", str(ready_lab.base / "init.yaml"))
    assert rc == 0 and "ab" * 32 in out, err
    cp2 = T.make_machine(str(ready_lab.base / "cp-2"), "cp-2", V33)
    join = ready_lab.base / "join.yaml"
    join.write_text(f"""apiVersion: kubeadm.k8s.io/v1beta4
kind: JoinConfiguration
discovery:
  bootstrapToken:
    apiServerEndpoint: 127.0.0.1:6443
    token: {TOKEN}
    caCertHashes: [{ca_cert_hash(ready_lab.ca_pem)}]
nodeRegistration:
  name: cp-2
controlPlane:
  certificateKey: {"cd" * 32}
""")
    rc, _, err = T.run("kubeadm", cp2, ["join", "--config", str(join)], V33)
    assert rc == 1 and "message authentication failed" in err
    assert "cp-2" not in ready_lab.state()["nodes"]


def test_kubectl_accepts_global_flags_before_the_command(ready_lab: Lab) -> None:
    rc, out, err = T.run("kubectl", ready_lab.cp, ["--kubeconfig", ready_lab.kc, "get", "nodes", "-o", "name"], V33)
    assert rc == 0 and out.split() == ["node/cp-1", "node/worker-1"], err


def test_a_worker_kubelet_upgraded_before_the_control_plane_never_becomes_ready(ready_lab: Lab) -> None:
    assert ready_lab.kubectl("drain", "worker-1", "--ignore-daemonsets", "--timeout=5s")[0] == 0
    ready_lab.kubelets[1].stop()
    T.set_kubelet_package(ready_lab.w, V34)  # apt-get install kubelet=1.34.2-1.1 on the worker
    ready_lab.kubelets[1] = T.KubeletThread(ready_lab.w, V34, restart=True)
    deadline = time.time() + 5
    while not ready_lab.state()["violations"] and time.time() < deadline:
        time.sleep(0.05)
    assert ready_lab.state()["violations"][0]["message"] == (
        "kubelet v1.34.2 on node worker-1 is newer than the API server v1.33.6; the kubelet refuses to register")
    rc, _, err = ready_lab.kubectl("wait", "--for=condition=Ready", "node/worker-1", "--timeout=1s")
    assert rc == 1 and "timed out waiting for the condition on nodes/worker-1" in err



def _client_pem(kubeconfig_text: str) -> tuple[dict, bytes]:
    import base64

    from tests.sim.kubesim import yamlish

    doc = yamlish.load_all(kubeconfig_text)[0]
    return doc, base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])


def test_kubeconfig_user_signs_a_client_certificate_with_the_cluster_ca_that_expires_after_the_period(simlab):
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    simlab.init()
    before = datetime.datetime.now(datetime.UTC)
    rc, out, err = simlab.kubeadm(simlab.cp, "kubeconfig", "user", "--config", str(simlab.base / "init.yaml"),
                               "--client-name", "alice", "--org", "dev", "--validity-period", "24h")
    assert rc == 0, err
    doc, pem = _client_pem(out)
    cert = x509.load_pem_x509_certificate(pem)
    assert doc["current-context"] == "alice@kubernetes" and doc["users"][0]["name"] == "alice"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["dev"]
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    left = cert.not_valid_after_utc - before
    assert datetime.timedelta(hours=23, minutes=59) < left <= datetime.timedelta(hours=24, minutes=1)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(simlab.base / "cp-1/etc/kubernetes/pki/ca.crt"), "/dev/stdin"],
                            input=pem, capture_output=True)
    assert verify.returncode == 0, verify.stderr

def test_kubeconfig_user_requires_client_name_and_config_like_kubeadm(simlab):
    rc, _, err = simlab.kubeadm(simlab.cp, "kubeconfig", "user", "--validity-period", "1h")
    assert rc == 1 and 'required flag(s) "client-name", "config" not set' in err


def test_kubeconfig_user_refuses_a_validity_period_that_is_not_a_go_duration(simlab):
    rc, _, err = simlab.kubeadm(simlab.cp, "kubeconfig", "user", "--config", str(simlab.base / "init.yaml"),
                             "--client-name", "alice", "--validity-period", "1d")
    assert rc == 1
    assert 'invalid argument "1d" for "--validity-period" flag: time: unknown unit "d" in duration "1d"' in err


def test_kubeconfig_user_without_the_cluster_ca_fails_naming_the_file(env):
    root = T.make_machine(str(env / "bare"), "bare", V34)
    (env / "init.yaml").write_text(init_config(V34))
    rc, out, err = T.run("kubeadm", root, ["kubeconfig", "user", "--config", str(env / "init.yaml"),
                                           "--client-name", "alice"], V34)
    assert rc == 1 and out == "" and "/etc/kubernetes/pki/ca.crt" in err


def test_kubeconfig_user_warns_about_a_period_longer_than_a_year(simlab):
    rc, _, err = simlab.kubeadm(simlab.cp, "kubeconfig", "user", "--config", str(simlab.base / "init.yaml"),
                             "--client-name", "alice", "--validity-period", "9000h")
    assert rc == 0 and "9000h0m0s is longer than the default duration 8760h0m0s" in err
