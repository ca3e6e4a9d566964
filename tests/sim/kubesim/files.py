"""Files kubeadm writes on a node: kubeconfigs, kubelet config and flags, static pod manifests, PKI."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import shutil
import subprocess
import time

from . import host, images, tls, yamlish

PKI = "/etc/kubernetes/pki"
MANIFESTS = "/etc/kubernetes/manifests"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
KUBELET_FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
STATE_FILE = "/var/lib/etcd/kubesim-state.json"
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def kubeconfig(server: str, user: str, cluster_name: str, pair: tuple[bytes, bytes]) -> str:
    """A kubeconfig as kubeadm writes it: the cluster CA and the user's client certificate and key."""
    ca = host.read(f"{PKI}/ca.crt") if host.exists(f"{PKI}/ca.crt") else ""
    crt, key = pair
    return yamlish.dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server,
                                                        "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
        "contexts": [{"name": f"{user}@{cluster_name}", "context": {"cluster": cluster_name, "user": user}}],
        "current-context": f"{user}@{cluster_name}",
        "users": [{"name": user, "user": {"client-certificate-data": base64.b64encode(crt).decode(),
                                          "client-key-data": base64.b64encode(key).decode()}}],
    })


# kubeadm's kubeconfig users: CN and O of each client certificate (admin.conf's group since 1.29:
# kubernetes.io/docs/reference/setup-tools/kubeadm/implementation-details, "kubeadm:cluster-admins")
KUBECONFIG_USERS = {"admin.conf": ("kubernetes-admin", ["kubeadm:cluster-admins"]),
                    "super-admin.conf": ("kubernetes-super-admin", ["system:masters"]),
                    "controller-manager.conf": ("system:kube-controller-manager", []),
                    "scheduler.conf": ("system:kube-scheduler", [])}


def node_user(node_name: str) -> tuple[str, list[str]]:
    return f"system:node:{node_name}", ["system:nodes"]


def write_kubeconfigs(server: str, cluster_name: str, control_plane: bool, super_admin: bool, node_name: str,
                      kubelet_pair: tuple[bytes, bytes] | None = None) -> None:
    """Signed with this machine's CA (a control plane); a worker's kubelet certificate comes from the
    API server (``kubelet_pair``), as the TLS bootstrap gets it signed there."""
    expires = time.time() + tls.CERTIFICATE_VALIDITY
    user, orgs = node_user(node_name)
    pair = kubelet_pair or tls.client_certificate(user, orgs, expires)
    host.write("/etc/kubernetes/kubelet.conf", kubeconfig(server, user, cluster_name, pair), 0o600)
    names = (["admin.conf", "controller-manager.conf", "scheduler.conf"] if control_plane else []) \
        + (["super-admin.conf"] if super_admin else [])
    for conf in names:
        user, orgs = KUBECONFIG_USERS[conf]
        host.write(f"/etc/kubernetes/{conf}",
                   kubeconfig(server, user, cluster_name, tls.client_certificate(user, orgs, expires)), 0o600)


def write_kubelet(node_name: str, node_ip: str, kubelet_doc: dict | None, version: str) -> None:
    cfg = dict(kubelet_doc or {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                               "cgroupDriver": "systemd", "staticPodPath": MANIFESTS})
    host.write(KUBELET_CONFIG, f"# written by kubeadm (kubesim) for {version}\n{yamlish.dump(cfg)}", 0o644)
    host.write(KUBELET_FLAGS, 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///var/run/containerd/'
                              f'containerd.sock --hostname-override={node_name} --node-ip={node_ip}"\n', 0o644)


def node_name_from_flags() -> str | None:
    if not host.exists(KUBELET_FLAGS):
        return None
    for part in host.read(KUBELET_FLAGS).replace('"', " ").split():
        if part.startswith("--hostname-override="):
            return part.split("=", 1)[1]
    return None


def store_annotation(cluster_cfg: dict, primary: str | None, is_primary: bool, local_etcd: bool = False) -> str:
    """``local_etcd``: a stacked control plane running etcd from the image keeps the state in it."""
    if (cluster_cfg.get("etcd") or {}).get("external") or local_etcd:
        return "etcd"
    return f"file:{STATE_FILE}" if is_primary else f"proxy:https://{primary}:6443"


def write_manifests(version: str, advertise: str, cluster_cfg: dict, store: str) -> None:
    ext = (cluster_cfg.get("etcd") or {}).get("external") or {}
    api_flags = [f"--advertise-address={advertise}", "--secure-port=6443",
                 f"--etcd-servers={','.join(ext.get('endpoints') or ['https://127.0.0.1:2379'])}",
                 f"--etcd-cafile={ext.get('caFile', PKI + '/etcd/ca.crt')}",
                 f"--etcd-certfile={ext.get('certFile', PKI + '/apiserver-etcd-client.crt')}",
                 f"--etcd-keyfile={ext.get('keyFile', PKI + '/apiserver-etcd-client.key')}",
                 f"--service-cluster-ip-range={(cluster_cfg.get('networking') or {}).get('serviceSubnet', '10.96.0.0/12')}",
                 # kubeadm's client CA and front-proxy (aggregation layer) flags
                 f"--client-ca-file={PKI}/ca.crt", f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
                 "--requestheader-allowed-names=front-proxy-client", "--requestheader-username-headers=X-Remote-User",
                 "--requestheader-group-headers=X-Remote-Group", "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                 f"--proxy-client-cert-file={PKI}/front-proxy-client.crt",
                 f"--proxy-client-key-file={PKI}/front-proxy-client.key"]
    extra = [f"--{k}={v}" for k, v in _args(cluster_cfg.get("apiServer"))]
    # kubeadm's controller-manager flags that name the cluster CA: the CSR signer's pair, the CA it
    # publishes to pods (kube-root-ca.crt) and the one it authenticates clients with
    cm_flags = [f"--cluster-signing-cert-file={PKI}/ca.crt", f"--cluster-signing-key-file={PKI}/ca.key",
                f"--root-ca-file={PKI}/ca.crt", f"--client-ca-file={PKI}/ca.crt",
                "--kubeconfig=/etc/kubernetes/controller-manager.conf"]
    comps = {"kube-apiserver": api_flags + extra, "kube-controller-manager": cm_flags, "kube-scheduler": []}
    if not ext and store != "etcd":  # without the etcd image: a manifest only, no member behind it
        comps["etcd"] = [f"--advertise-client-urls=https://{advertise}:2379",
                         f"--data-dir={((cluster_cfg.get('etcd') or {}).get('local') or {}).get('dataDir', '/var/lib/etcd')}"]
    repository = cluster_cfg.get("imageRepository") or images.DEFAULT_REPOSITORY
    for name, flags in comps.items():
        image = images.etcd_image(version, repository) if name == "etcd" else f"{repository}/{name}:{version}"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "kube-system", "labels": {"component": name, "tier": "control-plane"},
                            "annotations": {"kubesim.io/store": store, "kubesim.io/version": version}},
               "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical",
                        "containers": [{"name": name, "image": image,
                                        "command": [name] + flags}]}}
        host.write(f"{MANIFESTS}/{name}.yaml", yamlish.dump(pod), 0o600)


def _args(component: dict | None) -> list[tuple[str, str]]:
    args = (component or {}).get("extraArgs") or []
    if isinstance(args, dict):
        return list(args.items())
    return [(a["name"], a.get("value", "")) for a in args]


def set_manifest_versions(version: str) -> list[str]:
    """kubeadm upgrade: point this node's control plane static pods at a new version."""
    changed = []
    for name in CONTROL_PLANE:
        p = f"{MANIFESTS}/{name}.yaml"
        if not host.exists(p):
            continue
        pod = yamlish.load(host.read(p))
        pod["metadata"]["annotations"]["kubesim.io/version"] = version
        image = pod["spec"]["containers"][0]["image"]
        pod["spec"]["containers"][0]["image"] = f"{image.rsplit(':', 1)[0]}:{version}"  # same repository
        host.write(p, yamlish.dump(pod), 0o600)
        changed.append(name)
    return changed


def read_manifest(name: str) -> dict | None:
    p = f"{MANIFESTS}/{name}.yaml"
    if not host.exists(p):
        return None
    try:
        return yamlish.load(host.read(p))
    except (yamlish.YamlError, OSError):
        return None


def manifest_flags(pod: dict) -> dict[str, str]:
    out = {}
    for part in pod["spec"]["containers"][0].get("command", [])[1:]:
        if part.startswith("--") and "=" in part:
            k, v = part[2:].split("=", 1)
            out[k] = v
    return out


def _san(names: list[str]) -> str:
    out = []
    for n in dict.fromkeys(n for n in names if n):
        out.append(("IP:" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", n) else "DNS:") + n)
    return "subjectAltName=" + ",".join(out)


def ensure_pki(cluster_cfg: dict, advertise: str, stacked: bool, node_name: str | None = None,
               only: str | None = None, node: str | None = None) -> list[str]:
    """Keep every provided file (kubeadm reuses a given CA); create the missing ones with openssl.
    ``only``: just that leaf (`kubeadm init phase certs <name>`), never a CA. ``node_name``: the
    stacked member's name (its etcd certificates); ``node``: the node's name, which kubeadm puts in
    the API server certificate as it does the service names and the service IP."""
    made = []
    if shutil.which("openssl") is None:
        return made
    for ca, cn in (("ca", "kubernetes"), ("front-proxy-ca", "front-proxy-ca")) + ((("etcd/ca", "etcd-ca"),) if stacked else ()):
        if only is None and not host.exists(f"{PKI}/{ca}.crt"):
            _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "3650",
                      "-subj", f"/CN={cn}", "-keyout", host.path(f"{PKI}/{ca}.key"), "-out", host.path(f"{PKI}/{ca}.crt")])
            made.append(f"{ca}.crt")
    if only is None and not host.exists(f"{PKI}/sa.key"):
        _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", host.path(f"{PKI}/sa.key")])
        _openssl(["pkey", "-in", host.path(f"{PKI}/sa.key"), "-pubout", "-out", host.path(f"{PKI}/sa.pub")])
        made.append("sa.key")
    leaves = [("apiserver", "ca", "kube-apiserver"), ("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client"),
              ("front-proxy-client", "front-proxy-ca", "front-proxy-client")]
    if stacked:
        leaves += [("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client")]
    endpoint = (cluster_cfg.get("controlPlaneEndpoint") or "").rsplit(":", 1)[0]
    # kubeadm's own names (GetAPIServerAltNames in its pkiutil): the node name, the kubernetes.*
    # service names down to the cluster domain, the first IP of the service subnet, the advertise
    # address and the controlPlaneEndpoint host; then certSANs. 127.0.0.1 is the simulator's own
    # (its components and tests ask the API server there).
    net = cluster_cfg.get("networking") or {}
    service_ip = str(next(ipaddress.ip_network(str(net.get("serviceSubnet") or "10.96.0.0/12").split(",")[0],
                                               strict=False).hosts()))
    sans = _san([node or "", advertise, "127.0.0.1", endpoint, service_ip, "kubernetes", "kubernetes.default",
                 "kubernetes.default.svc", f"kubernetes.default.svc.{net.get('dnsDomain') or 'cluster.local'}",
                 *((cluster_cfg.get("apiServer") or {}).get("certSANs") or [])])
    exts = {"apiserver": sans}
    if stacked and node_name:
        # kubeadm's etcd member certificates: server and peer for the node's name and addresses
        member = _san([node_name, advertise, "localhost", "127.0.0.1", "::1"]) + "\nextendedKeyUsage=serverAuth,clientAuth"
        leaves += [("etcd/server", "etcd/ca", node_name), ("etcd/peer", "etcd/ca", node_name),
                   ("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client")]
        exts.update({"etcd/server": member, "etcd/peer": member})
    for name, ca, cn in leaves:
        if only is not None and name != only:
            continue
        if not host.exists(f"{PKI}/{name}.crt") and host.exists(f"{PKI}/{ca}.key"):
            key, csr, crt = (host.path(f"{PKI}/{name}.{x}") for x in ("key", "csr", "crt"))
            ext = host.path(f"{PKI}/{name}.ext")
            with open(ext, "w", encoding="utf-8") as f:
                f.write(exts.get(name, "extendedKeyUsage=clientAuth") + "\n")
            _openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}",
                      "-keyout", key, "-out", csr])
            _openssl(["x509", "-req", "-in", csr, "-CA", host.path(f"{PKI}/{ca}.crt"), "-CAkey", host.path(f"{PKI}/{ca}.key"),
                      "-CAcreateserial", "-days", "365", "-extfile", ext, "-out", crt])
            os.unlink(csr)
            os.unlink(ext)
            made.append(f"{name}.crt")
    return made


def _openssl(args: list[str]) -> None:
    for a in args:
        if a.startswith(host.path(PKI)):
            os.makedirs(os.path.dirname(a), exist_ok=True)
    old = os.umask(0o077)
    try:
        subprocess.run(["openssl", *args], check=True, capture_output=True)
    finally:
        os.umask(old)


def serving_cert() -> tuple[str, str] | None:
    """The API server's TLS pair: kubeadm's apiserver.crt, else a self-signed one made once."""
    if host.exists(f"{PKI}/apiserver.crt") and host.exists(f"{PKI}/apiserver.key"):
        return host.path(f"{PKI}/apiserver.crt"), host.path(f"{PKI}/apiserver.key")
    crt, key = host.path("/var/lib/kubesim/serving.crt"), host.path("/var/lib/kubesim/serving.key")
    if not os.path.exists(crt):
        if shutil.which("openssl") is None:
            return None
        os.makedirs(os.path.dirname(crt), exist_ok=True)
        old = os.umask(0o077)
        try:
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-days", "365", "-subj", "/CN=kube-apiserver", "-keyout", key, "-out", crt],
                           check=True, capture_output=True)
        finally:
            os.umask(old)
    return crt, key
