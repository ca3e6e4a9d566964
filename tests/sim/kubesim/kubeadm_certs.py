"""`kubeadm certs renew <name>|all` and `kubeadm certs check-expiration`, with kubeadm's rules.

- The names are kubeadm's; any other is refused (cobra's unknown command). The etcd member
  certificates and apiserver-etcd-client exist only with a local (stacked) etcd, as in kubeadm's
  renewal manager, which lists them only then (here: an etcd static pod manifest on the machine).
- Renewal is unconditional (whatever the expiry) and uses the certificate on disk as the source of
  its attributes: the same subject, SANs and key usages, a new key, signed by the CA in
  /etc/kubernetes/pki. Kubeconfigs get a new embedded client certificate for the kubeconfig's user
  (its subject kept when it holds a real certificate).
- The validity is the ClusterConfiguration's ``certificateValidityPeriod`` (v1beta4, kubeadm 1.31+;
  default 8760h): from ``--config`` when given, else from the cluster's kubeadm-config ("[renew]
  Reading configuration from the cluster..."), else, when the cluster cannot be asked, the default
  ("Error reading configuration from the Cluster. Falling back to default configuration"). Whole
  days here (openssl x509 -days), at least one.
- A certificate that is not on disk is reported as MISSING! and skipped.
- Without the CA's key (kubeadm's "external CA" mode) nothing is renewed: kubeadm prints
  "Detected external <ca>, <what> can't be renewed" and still exits 0, so a caller has to look at
  the expiry afterwards (check-expiration) rather than trust the exit code.
"""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import time

from . import files, host, yamlish
from .host import SimError
from .tls import client_certificate as _client_certificate

# name -> (file under /etc/kubernetes/pki or /etc/kubernetes, CA base name, what kubeadm calls it)
PKI_CERTS = {
    "apiserver": ("apiserver", "ca", "certificate for serving the Kubernetes API"),
    "apiserver-kubelet-client": ("apiserver-kubelet-client", "ca", "certificate for the API server to connect to kubelet"),
    "front-proxy-client": ("front-proxy-client", "front-proxy-ca", "certificate for the front proxy client"),
}
LOCAL_ETCD_CERTS = {
    "apiserver-etcd-client": ("apiserver-etcd-client", "etcd/ca", "certificate the apiserver uses to access etcd"),
    "etcd-healthcheck-client": ("etcd/healthcheck-client", "etcd/ca", "certificate for liveness probes to healthcheck etcd"),
    "etcd-peer": ("etcd/peer", "etcd/ca", "certificate for etcd nodes to communicate with each other"),
    "etcd-server": ("etcd/server", "etcd/ca", "certificate for serving etcd"),
}
KUBECONFIGS = {
    "admin.conf": ("admin.conf", "ca", "certificate embedded in the kubeconfig file for the admin to use and for kubeadm itself"),
    "controller-manager.conf": ("controller-manager.conf", "ca",
                                "certificate embedded in the kubeconfig file for the controller manager to use"),
    "scheduler.conf": ("scheduler.conf", "ca", "certificate embedded in the kubeconfig file for the scheduler manager to use"),
    "super-admin.conf": ("super-admin.conf", "ca", "certificate embedded in the kubeconfig file for the super-admin"),
}
ORGS = {"kubernetes-admin": ["kubeadm:cluster-admins"], "kubernetes-super-admin": ["system:masters"]}
YEAR = 8760 * 3600.0


def known() -> dict[str, tuple[str, str, str]]:
    out = dict(PKI_CERTS) | dict(KUBECONFIGS)
    if files.read_manifest("etcd") is not None:
        out |= LOCAL_ETCD_CERTS
    return dict(sorted(out.items()))


def _path(name: str, base: str) -> str:
    return f"/etc/kubernetes/{base}" if name.endswith(".conf") else f"{files.PKI}/{base}.crt"


def _openssl(*args: str, stdin: bytes | None = None) -> bytes:
    try:
        return subprocess.run(["openssl", *args], input=stdin, check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as e:
        raise SimError(f"failed to renew certificate: {e.stderr.decode(errors='replace').strip()}") from None


def _kubeconfig_user(doc: dict) -> tuple[dict, bytes | None]:
    user = doc["users"][0]["user"]
    try:
        pem = base64.b64decode(user.get("client-certificate-data", ""))
    except ValueError:
        pem = b""
    return user, pem if b"BEGIN CERTIFICATE" in pem else None


def validity_seconds(a, version: str) -> float:
    """``certificateValidityPeriod`` from --config, else the cluster's configuration, else 8760h."""
    from .kubeadm import _load_config
    from .kvalues import go_duration

    if a.config:
        cc = _load_config(a.config, version).get("ClusterConfiguration") or {}
    else:
        print("[renew] Reading configuration from the cluster...")
        try:
            from . import client

            # simplified: only this machine's own API server is asked (kubeadm asks admin.conf's server)
            if files.read_manifest("kube-apiserver") is None:
                raise SimError("no local API server")
            bases = [client.local(client.from_kubeconfig(host.path("/etc/kubernetes/admin.conf")))]
            cc = client.op(bases, "discover", {}, timeout=5).get("clusterConfiguration") or {}
        except (SimError, OSError, KeyError, ValueError):
            print("[renew] Error reading configuration from the Cluster. Falling back to default configuration")
            cc = {}
    seconds = go_duration(cc["certificateValidityPeriod"]) if cc.get("certificateValidityPeriod") else None
    return seconds if seconds else YEAR


def _renew_pki(base: str, ca: str, seconds: float) -> None:
    crt = host.path(f"{files.PKI}/{base}.crt")
    with tempfile.TemporaryDirectory(prefix="kubesim-renew-") as d:
        old = os.umask(0o077)
        try:
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{d}/key.pem")
            # the request carries the old certificate's subject and extensions (SANs, usages) and the new key
            _openssl("x509", "-x509toreq", "-in", crt, "-key", f"{d}/key.pem", "-copy_extensions", "copyall",
                     "-out", f"{d}/req.csr")
            _openssl("x509", "-req", "-in", f"{d}/req.csr", "-CA", host.path(f"{files.PKI}/{ca}.crt"),
                     "-CAkey", host.path(f"{files.PKI}/{ca}.key"), "-CAcreateserial", "-days", str(max(1, int(seconds // 86400))),
                     "-copy_extensions", "copyall", "-out", f"{d}/crt.pem")
        finally:
            os.umask(old)
        with open(f"{d}/crt.pem", "rb") as c, open(f"{d}/key.pem", "rb") as k:
            host.write(f"{files.PKI}/{base}.key", k.read(), 0o600)
            host.write(f"{files.PKI}/{base}.crt", c.read(), 0o644)
    serial = host.path(f"{files.PKI}/{ca}.srl")
    if os.path.exists(serial):
        os.unlink(serial)


def _renew_kubeconfig(path: str, seconds: float) -> None:
    doc = yamlish.load(host.read(path))
    user, pem = _kubeconfig_user(doc)
    name, orgs = doc["users"][0]["name"], ORGS.get(doc["users"][0]["name"], [])
    if pem is not None:
        subject = _openssl("x509", "-noout", "-subject", "-nameopt", "RFC2253", stdin=pem).decode()
        parts = [p.split("=", 1) for p in subject.split("=", 1)[1].strip().split(",") if "=" in p]
        name = next((v for k, v in parts if k.strip() == "CN"), name)
        orgs = [v for k, v in parts if k.strip() == "O"]
    crt, key = _client_certificate(name, orgs, time.time() + max(1, int(seconds // 86400)) * 86400.0)
    user["client-certificate-data"] = base64.b64encode(crt).decode()
    user["client-key-data"] = base64.b64encode(key).decode()
    host.write(path, yamlish.dump(doc), 0o600)


def renew(a, version: str) -> int:
    table = known()
    if a.name != "all" and a.name not in table:
        raise SimError(f'unknown command "{a.name}" for "kubeadm certs renew"')
    names = list(table) if a.name == "all" else [a.name]
    seconds = validity_seconds(a, version)
    for name in names:
        base, ca, what = table[name]
        path = _path(name, base)
        if not host.exists(path):
            print(f"MISSING! {what}")
            continue
        if not host.exists(f"{files.PKI}/{ca}.key"):
            print(f"Detected external {ca.replace('/', '-')}, {what} can't be renewed")
            continue
        if name.endswith(".conf"):
            _renew_kubeconfig(path, seconds)
        else:
            _renew_pki(base, ca, seconds)
        print(f"{what} renewed")
    if a.name == "all":
        print("\nDone renewing certificates. You must restart the kube-apiserver, kube-controller-manager, "
              "kube-scheduler and etcd, so that they can use the new certificates.")
    return 0


def _not_after(name: str, path: str) -> str | None:
    if name.endswith(".conf"):
        pem = _kubeconfig_user(yamlish.load(host.read(path)))[1]
        if pem is None:
            return None
        out = _openssl("x509", "-noout", "-enddate", stdin=pem)
    else:
        out = _openssl("x509", "-noout", "-enddate", "-in", host.path(path))
    return out.decode().strip().split("=", 1)[1]


def check_expiration(a, version: str) -> int:
    now = time.time()
    print(f"{'CERTIFICATE':<26} {'EXPIRES':<25} {'RESIDUAL TIME':<15} {'CERTIFICATE AUTHORITY':<23} EXTERNALLY MANAGED")
    for name, (base, ca, _what) in known().items():
        path = _path(name, base)
        if not host.exists(path):
            continue
        end = _not_after(name, path)
        if end is None:
            continue
        t = time.mktime(time.strptime(end, "%b %d %H:%M:%S %Y %Z")) - time.timezone
        left = t - now
        residual = "<invalid>" if left <= 0 else (f"{int(left // 86400)}d" if left >= 86400 else f"{int(left // 3600)}h")
        external = "no" if host.exists(f"{files.PKI}/{ca}.key") else "yes"
        print(f"{name:<26} {time.strftime('%b %d, %Y %H:%M UTC', time.gmtime(t)):<25} {residual:<15} "
              f"{ca.replace('etcd/ca', 'etcd-ca'):<23} {external}")
    return 0


__all__ = ["check_expiration", "known", "renew"]


def init_phase_certs(a, version: str, cfg: dict) -> int:
    """`kubeadm init phase certs apiserver --config`: the API server's serving certificate from the
    configuration (advertise address, controlPlaneEndpoint, certSANs), signed by the CA on disk. As
    kubeadm's docs say, when both files already exist nothing is generated and they are used as they
    are, whatever names they hold (which is why a SAN change moves them aside first)."""
    if a.what != "apiserver":
        raise SimError(f'unknown command "{a.what}" for "kubeadm init phase certs" (the simulator has apiserver)')
    ic = cfg.get("InitConfiguration") or {}
    cc = cfg.get("ClusterConfiguration") or {}
    advertise = (ic.get("localAPIEndpoint") or {}).get("advertiseAddress") or ""
    crt, key = f"{files.PKI}/apiserver.crt", f"{files.PKI}/apiserver.key"
    if host.exists(crt) and host.exists(key):
        print('[certs] Using existing apiserver certificate and key on disk')
        return 0
    if not host.exists(f"{files.PKI}/ca.key"):
        raise SimError("error execution phase certs/apiserver: couldn't load CA certificate ca: "
                       f"open {files.PKI}/ca.key: no such file or directory")
    node = (ic.get("nodeRegistration") or {}).get("name") or host.hostname()
    files.ensure_pki(cc, advertise, stacked=not (cc.get("etcd") or {}).get("external"), only="apiserver", node=node)
    if not host.exists(crt):
        raise SimError("error execution phase certs/apiserver: failure while creating apiserver key and certificate")
    print('[certs] Generating "apiserver" certificate and key')
    return 0


def upload_config(a, version: str, cfg: dict) -> int:
    """`kubeadm init phase upload-config kubeadm --config`: the ClusterConfiguration into the
    kubeadm-config ConfigMap, which later joins and upgrades read."""
    from . import client
    from .kubeadm import _server_bases

    if a.what != "kubeadm":
        raise SimError(f'unknown command "{a.what}" for "kubeadm init phase upload-config" (the simulator has kubeadm)')
    cc = cfg.get("ClusterConfiguration") or {}
    kept = {k: v for k, v in cc.items() if k in ("etcd", "networking", "apiServer", "clusterName",
                                                  "controlPlaneEndpoint", "kubernetesVersion", "certificateValidityPeriod")}
    client.op(_server_bases("/etc/kubernetes/admin.conf"), "upload_config", {"clusterConfiguration": kept})
    print('[upload-config] Storing the configuration used in ConfigMap "kubeadm-config" in the "kube-system" Namespace')
    return 0
