"""The simulator's `kubeadm certs renew` / `check-expiration` keep kubeadm's rules: unconditional
renewal from the CA on disk with the old certificate's subject, SANs and usages and a new key; an
unknown name refused; a missing certificate reported; with the CA key absent (external CA) nothing
renewed and, as kubeadm does, exit 0 with "Detected external ca"."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from tests.sim import testing as T
from tests.sim.kubesim import files, host, yamlish

V = "v1.34.2"


@pytest.fixture
def cp(tmp_path: Path) -> str:
    root = T.make_machine(str(tmp_path / "cp-1"), "cp-1", V)
    with host.use_root(root):
        files.ensure_pki({"controlPlaneEndpoint": "10.0.0.100:6443"}, "10.0.0.5", stacked=False)
        files.write_kubeconfigs("https://10.0.0.100:6443", "kubernetes", control_plane=True, super_admin=True,
                                node_name="cp-1")
    return root


def x509(root: str, rel: str, *what: str) -> str:
    return subprocess.run(["openssl", "x509", "-noout", *what, "-in", f"{root}{rel}"],
                          capture_output=True, text=True, check=True).stdout


def kubeadm(root: str, *argv: str) -> tuple[int, str, str]:
    return T.run("kubeadm", root, list(argv), V)


def test_renew_keeps_subject_sans_and_usages_with_a_new_key_from_the_cluster_ca(cp):
    crt, key = "/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/apiserver.key"
    attrs = ("-subject", "-ext", "subjectAltName,extendedKeyUsage")
    before, old_key, old_serial = x509(cp, crt, *attrs), Path(cp + key).read_bytes(), x509(cp, crt, "-serial")
    rc, out, err = kubeadm(cp, "certs", "renew", "apiserver")
    assert rc == 0, err
    assert "certificate for serving the Kubernetes API renewed" in out
    assert x509(cp, crt, *attrs) == before and "IP Address:10.0.0.100" in before
    assert Path(cp + key).read_bytes() != old_key and x509(cp, crt, "-serial") != old_serial
    ok = subprocess.run(["openssl", "verify", "-CAfile", f"{cp}/etc/kubernetes/pki/ca.crt", cp + crt],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    pub = subprocess.run(["openssl", "pkey", "-pubout", "-in", cp + key], capture_output=True, text=True).stdout
    assert subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", cp + crt],
                          capture_output=True, text=True).stdout == pub  # the key on disk matches the certificate


def test_an_unknown_name_is_refused_and_etcd_names_exist_only_with_a_local_etcd(cp):
    for name in ("bogus", "etcd-server", "apiserver-etcd-client"):
        rc, _, err = kubeadm(cp, "certs", "renew", name)
        assert rc == 1 and f'unknown command "{name}" for "kubeadm certs renew"' in err


def test_without_the_ca_key_nothing_is_renewed_and_kubeadm_still_exits_0(cp):
    crt = "/etc/kubernetes/pki/apiserver-kubelet-client.crt"
    before = Path(cp + crt).read_bytes()
    Path(cp, "etc/kubernetes/pki/ca.key").unlink()
    rc, out, err = kubeadm(cp, "certs", "renew", "apiserver-kubelet-client")
    assert rc == 0, err
    assert "Detected external ca, certificate for the API server to connect to kubelet can't be renewed" in out
    assert Path(cp + crt).read_bytes() == before
    rc, out, _ = kubeadm(cp, "certs", "check-expiration")
    row = next(line for line in out.splitlines() if line.startswith("apiserver-kubelet-client "))
    assert row.split()[-1] == "yes"  # externally managed


def test_renew_all_gives_kubeconfigs_a_real_client_certificate_and_check_expiration_lists_them(cp):
    Path(cp, "etc/kubernetes/pki/front-proxy-client.crt").unlink()
    rc, out, err = kubeadm(cp, "certs", "renew", "all")
    assert rc == 0, err
    assert "MISSING! certificate for the front proxy client" in out
    assert "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself renewed" in out
    assert "Done renewing certificates." in out
    doc = yamlish.load(Path(cp, "etc/kubernetes/admin.conf").read_text())
    pem = base64.b64decode(doc["users"][0]["user"]["client-certificate-data"])
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True).stdout.decode()
    assert "O = kubeadm:cluster-admins" in subject and "CN = kubernetes-admin" in subject
    rc, out, _ = kubeadm(cp, "certs", "check-expiration")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert set(rows) == {"admin.conf", "apiserver", "apiserver-kubelet-client", "controller-manager.conf",
                         "scheduler.conf", "super-admin.conf"}
    assert all(r[6] in ("364d", "365d") and r[-1] == "no" for r in rows.values()), rows


def test_renew_issues_for_the_configurations_certificate_validity_period_and_defaults_to_a_year(cp, tmp_path):
    cfg = tmp_path / "short.yaml"
    cfg.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncertificateValidityPeriod: 480h\n")
    rc, out, err = kubeadm(cp, "certs", "renew", "all", "--config", str(cfg))
    assert rc == 0, err
    rc, out, _ = kubeadm(cp, "certs", "check-expiration")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert {r[6] for r in rows.values()} <= {"19d", "20d"} and len(rows) == 7, rows
    # no --config and no API server on this machine to ask: kubeadm's default, one year
    rc, out, err = kubeadm(cp, "certs", "renew", "scheduler.conf")
    assert rc == 0, err
    assert "Falling back to default configuration" in out
    rc, out, _ = kubeadm(cp, "certs", "check-expiration")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["scheduler.conf"][6] in ("364d", "365d") and rows["admin.conf"][6] in ("19d", "20d")


def test_a_malformed_validity_period_in_the_configuration_is_refused_as_kubeadm_refuses_it(cp, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\ncertificateValidityPeriod: 20d\n")
    before = Path(cp, "etc/kubernetes/pki/apiserver.crt").read_bytes()
    rc, _, err = kubeadm(cp, "certs", "renew", "apiserver", "--config", str(cfg))
    assert rc == 1 and 'unknown unit "d"' in err
    assert Path(cp, "etc/kubernetes/pki/apiserver.crt").read_bytes() == before
