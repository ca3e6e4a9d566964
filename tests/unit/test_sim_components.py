"""The simulator's kube-controller-manager and kube-scheduler static pods: /healthz answers ok while
the client certificate the component read when it started verifies against the cluster CA; a
certificate changed on disk is seen only once the pod restarts (its manifest gone, then back)."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from tests.sim import testing as T
from tests.sim.kubesim import files, host, yamlish
from tests.sim.kubesim.components import ComponentPod
from tests.unit.test_sim_kubeadm_certs import cp  # noqa: F401 (the same control-plane machine)

V = "v1.34.2"
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kube-scheduler"},
       "spec": {"containers": [{"name": "kube-scheduler", "image": f"registry.k8s.io/kube-scheduler:{V}"}]}}


def healthz(pod: ComponentPod) -> tuple[int, str]:
    assert pod.server is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    url = f"https://127.0.0.1:{pod.server.server_address[1]}/healthz"
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def foreign_client_cert(root: str) -> None:
    """scheduler.conf given a client certificate from a CA the cluster does not know."""
    other = T.make_machine(root + "-other", "other", V)
    with host.use_root(other):
        files.ensure_pki({}, "10.0.0.9", stacked=False)
        files.write_kubeconfigs("https://10.0.0.9:6443", "kubernetes", control_plane=True, super_admin=False,
                                node_name="other")
        theirs = yamlish.load(host.read("/etc/kubernetes/scheduler.conf"))
    with host.use_root(root):
        doc = yamlish.load(host.read("/etc/kubernetes/scheduler.conf"))
        doc["users"][0]["user"]["client-certificate-data"] = theirs["users"][0]["user"]["client-certificate-data"]
        host.write("/etc/kubernetes/scheduler.conf", yamlish.dump(doc), 0o600)


def test_healthz_follows_the_certificate_read_at_start_until_the_pod_restarts(cp):
    logs: list[str] = []
    pod = ComponentPod("kube-scheduler", logs.append)
    pod.port = 0  # any free port: the unit tests share one network
    with host.use_root(cp):
        pod.sync(POD)
        try:
            assert healthz(pod) == (200, "ok")
            foreign_client_cert(cp)
            pod.sync(POD)  # the same manifest: the running pod keeps what it read
            assert healthz(pod) == (200, "ok")
            pod.sync(None)  # manifest moved away: the pod stops
            assert pod.server is None
            pod.sync(POD)  # and back: it starts on the certificate now on disk
            code, body = healthz(pod)
            assert code == 500 and "client certificate of /etc/kubernetes/scheduler.conf" in body
        finally:
            pod.stop()
    assert any("kube-scheduler stopped" in line for line in logs)


def test_a_kubeconfig_without_an_embedded_certificate_is_unhealthy(cp):
    with host.use_root(cp):
        doc = yamlish.load(host.read("/etc/kubernetes/controller-manager.conf"))
        doc["users"][0]["user"].pop("client-certificate-data")
        host.write("/etc/kubernetes/controller-manager.conf", yamlish.dump(doc), 0o600)
        pod = ComponentPod("kube-controller-manager", lambda _m: None)
        pod.port = 0
        pod.sync(POD | {"metadata": {"name": "kube-controller-manager"}})
        try:
            code, body = healthz(pod)
        finally:
            pod.stop()
    assert code == 500 and "no client certificate in /etc/kubernetes/controller-manager.conf" in body


def test_healthz_fails_once_the_api_servers_certificate_is_not_from_a_ca_the_kubeconfig_trusts(cp):
    """The CA a component trusts its API server with is read at start: a serving certificate from
    another CA (a cluster CA rotation's phase 2 on a node whose kubeconfigs do not trust the new CA
    yet) fails it, and the same certificate passes once the kubeconfig trusts both and it restarted."""
    import base64

    other = T.make_machine(cp + "-ca", "ca", V)
    with host.use_root(other):
        files.ensure_pki({}, "10.0.0.9", stacked=False)
        their_ca = host.read(f"{files.PKI}/ca.crt")
        their_serving = host.read(f"{files.PKI}/apiserver.crt")
    pod = ComponentPod("kube-scheduler", lambda _m: None)
    pod.port = 0
    with host.use_root(cp):
        ours = host.read(f"{files.PKI}/apiserver.crt")
        pod.sync(POD)
        try:
            assert healthz(pod) == (200, "ok")
            host.write(f"{files.PKI}/apiserver.crt", their_serving, 0o644)  # served from disk at once
            code, body = healthz(pod)
            assert code == 500 and "does not verify against the CA of /etc/kubernetes/scheduler.conf" in body
            doc = yamlish.load(host.read("/etc/kubernetes/scheduler.conf"))
            both = host.read(f"{files.PKI}/ca.crt") + their_ca
            doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(both.encode()).decode()
            host.write("/etc/kubernetes/scheduler.conf", yamlish.dump(doc), 0o600)
            assert healthz(pod)[0] == 500  # read at start: not yet
            pod.sync(None)
            pod.sync(POD)
            assert healthz(pod) == (200, "ok")
        finally:
            pod.stop()
            host.write(f"{files.PKI}/apiserver.crt", ours, 0o644)


def test_the_kubelet_process_reads_kubelet_conf_once_and_keeps_it_until_it_restarts(cp):
    """The lab's kubelet (a process of its own) trusts the API server with the CA of the kubelet.conf
    it read when it started: a CA rotation must restart it for a new kubelet.conf to count."""
    from tests.sim.kubesim.kubelet import Kubelet

    with host.use_root(cp):
        running = Kubelet(V, log=lambda _m: None, separate_process=True)
        first = running.api_bases()[-1]
        doc = yamlish.load(host.read("/etc/kubernetes/kubelet.conf"))
        doc["clusters"][0]["cluster"]["server"] = "https://10.0.0.200:6443"
        host.write("/etc/kubernetes/kubelet.conf", yamlish.dump(doc), 0o600)
        assert running.api_bases()[-1] is first and "10.0.0.100" in first
        restarted = Kubelet(V, log=lambda _m: None, separate_process=True)
        assert "10.0.0.200" in restarted.api_bases()[-1]
        in_process = Kubelet(V, log=lambda _m: None)  # the unit tests' kubelet reads it every tick
        assert "10.0.0.200" in in_process.api_bases()[-1]


def test_the_controller_managers_signer_refuses_a_ca_bundle_or_a_key_that_is_not_its_certificates(cp):
    """kubeadm points --cluster-signing-cert-file at ca.crt: once that file holds two CAs (a cluster CA
    rotation's first phase) the controller manager's CSR signer refuses it, as the real one does
    (kubernetes/kubeadm#1350); a file holding the CA whose key is ca.key is taken."""
    other = T.make_machine(cp + "-ca2", "ca2", V)
    with host.use_root(other):
        files.ensure_pki({}, "10.0.0.9", stacked=False)
        their_ca = host.read(f"{files.PKI}/ca.crt")
    with host.use_root(cp):
        files.write_manifests(V, "10.0.0.5", {}, "file:/tmp/x")
        pod_doc = files.read_manifest("kube-controller-manager")
        assert files.manifest_flags(pod_doc)["cluster-signing-cert-file"] == f"{files.PKI}/ca.crt"
        ours = host.read(f"{files.PKI}/ca.crt")
        pod = ComponentPod("kube-controller-manager", lambda _m: None)
        pod.port = 0
        try:
            host.write(f"{files.PKI}/ca.crt", ours + their_ca, 0o644)
            pod.sync(pod_doc)
            code, body = healthz(pod)
            assert code == 500 and f'error reading CA cert file "{files.PKI}/ca.crt": expected 1 certificate, found 2' in body
            host.write(f"{files.PKI}/signing.crt", their_ca, 0o644)  # not the CA of ca.key
            pod_doc["spec"]["containers"][0]["command"] = [
                c.replace(f"cluster-signing-cert-file={files.PKI}/ca.crt", f"cluster-signing-cert-file={files.PKI}/signing.crt")
                for c in pod_doc["spec"]["containers"][0]["command"]]
            pod.sync(pod_doc)
            assert "private key does not match" in healthz(pod)[1]
            host.write(f"{files.PKI}/signing.crt", ours, 0o644)
            pod.sync(None)
            pod.sync(pod_doc)
            assert healthz(pod) == (200, "ok")
        finally:
            pod.stop()
            host.write(f"{files.PKI}/ca.crt", ours, 0o644)
