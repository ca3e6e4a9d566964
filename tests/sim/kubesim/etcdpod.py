"""Stacked etcd: kubeadm's etcd static pod, run from the "etcd image" (Debian's real etcd binaries).

kubeadm writes /etc/kubernetes/manifests/etcd.yaml with the real command line; the kubelet runs that
command with the image's binary as a process of its own that outlives the kubelet (a container), stops it
when the manifest goes and restarts it when the manifest's command changes. Joining control planes add
themselves with `member add` through etcd's v3 JSON gateway; `kubeadm reset` removes the member first.
Without the image package (in-process unit tests) there is no etcd process and the state stays in a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request

from . import files, host, yamlish
from .host import SimError

IMAGE_DIR = "/usr/lib/kubesim/images/etcd"
PID_FILE = "/run/kubesim/etcd.pid"
SPEC_FILE = "/run/kubesim/etcd.spec"
RUNNING_IMAGE_FILE = "/run/kubesim/etcd.image"  # the image tag the running member was started from
LOG_FILE = "/var/log/kubesim/etcd.log"
ETCD_PKI = f"{files.PKI}/etcd"
DATA_DIR = "/var/lib/etcd"
# what kubeadm's own etcd client (and kubeforge's etcdctl) present: the healthcheck-client pair
CLIENT = (f"{ETCD_PKI}/ca.crt", f"{ETCD_PKI}/healthcheck-client.crt", f"{ETCD_PKI}/healthcheck-client.key")


def image_installed() -> bool:
    return host.exists(f"{IMAGE_DIR}/etcd")


def _url(addr: str, port: int) -> str:
    return f"https://[{addr}]:{port}" if ":" in addr else f"https://{addr}:{port}"


def command(name: str, advertise: str, initial_cluster: str, existing: bool, data_dir: str = DATA_DIR) -> list[str]:
    """kubeadm's etcd command line (cmd/kubeadm/app/phases/etcd/local.go)."""
    cmd = ["etcd", f"--advertise-client-urls={_url(advertise, 2379)}", f"--cert-file={ETCD_PKI}/server.crt",
           "--client-cert-auth=true", f"--data-dir={data_dir}",
           f"--initial-advertise-peer-urls={_url(advertise, 2380)}", f"--initial-cluster={initial_cluster}",
           f"--key-file={ETCD_PKI}/server.key",
           f"--listen-client-urls=https://127.0.0.1:2379,{_url(advertise, 2379)}",
           "--listen-metrics-urls=http://127.0.0.1:2381", f"--listen-peer-urls={_url(advertise, 2380)}",
           f"--name={name}", f"--peer-cert-file={ETCD_PKI}/peer.crt", "--peer-client-cert-auth=true",
           f"--peer-key-file={ETCD_PKI}/peer.key", f"--peer-trusted-ca-file={ETCD_PKI}/ca.crt",
           "--snapshot-count=10000", f"--trusted-ca-file={ETCD_PKI}/ca.crt"]
    if existing:
        cmd.insert(6, "--initial-cluster-state=existing")
    return cmd


def write_manifest(name: str, advertise: str, initial_cluster: str, existing: bool, data_dir: str = DATA_DIR, *,
                   image: str) -> None:
    """``image``: kubeadm's etcd image for the version in the cluster's imageRepository (kubesim/images.py);
    what runs is the etcd image package's binary whatever the tag."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "etcd", "namespace": "kube-system", "labels": {"component": "etcd", "tier": "control-plane"},
                        "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls": _url(advertise, 2379)}},
           "spec": {"hostNetwork": True, "priorityClassName": "system-node-critical",
                    "containers": [{"name": "etcd", "image": image,
                                    "command": command(name, advertise, initial_cluster, existing, data_dir)}]}}
    host.write(f"{files.MANIFESTS}/etcd.yaml", yamlish.dump(pod), 0o600)


# --- the static pod process -------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0] == host.path(f"{IMAGE_DIR}/etcd").encode()
    except OSError:
        return False


def running_pid() -> int | None:
    try:
        pid = int(host.read(PID_FILE).strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def kill_running(timeout: float = 15) -> None:
    pid = running_pid()
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    host.remove(PID_FILE)


def running_image() -> str | None:
    """The image tag of the running member, or None when no member runs."""
    if running_pid() is None:
        return None
    try:
        return host.read(RUNNING_IMAGE_FILE).strip()
    except OSError:
        return None


def _spec(argv: list[str]) -> str:
    return hashlib.sha256("\0".join(argv).encode()).hexdigest()


class EtcdPod:
    """Keeps one etcd process per machine running the manifest's command (a container restarts on change)."""

    def __init__(self, log) -> None:
        self.log = log

    def sync(self, pod: dict | None) -> None:
        if pod is None or not image_installed():
            kill_running()
            return
        container = pod["spec"]["containers"][0]
        argv = [host.path(f"{IMAGE_DIR}/etcd")] + container["command"][1:]
        # a new image is a new container, as with any static pod: the member restarts on it (the lab's
        # image holds one real etcd build, which stands in for every tag; see tests/sim/README.md)
        spec = _spec(argv + [container["image"]])
        pid = running_pid()
        if pid is not None:
            try:
                if host.read(SPEC_FILE).strip() == spec:
                    return
            except OSError:
                pass
            self.log(f"etcd manifest changed: restarting etcd (pid {pid})")
            kill_running()
        os.makedirs(os.path.dirname(host.path(LOG_FILE)), exist_ok=True)
        # started through a shell that exits at once, so etcd is not the kubelet's child: like a container
        # under its shim it is reaped by init, never left a zombie that still looks like an etcd process
        out = subprocess.run(["/bin/sh", "-c", 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!', "sh",
                              host.path(LOG_FILE), *argv], capture_output=True, text=True, start_new_session=True,
                             check=True)
        pid = int(out.stdout.strip())
        host.write(PID_FILE, str(pid))
        host.write(SPEC_FILE, spec)
        host.write(RUNNING_IMAGE_FILE, container["image"].rsplit(":", 1)[1])
        self.log(f"started etcd static pod (pid {pid}, image {container['image']})")


# --- members, through the v3 JSON gateway --------------------------------------------------------------

def _context() -> ssl.SSLContext:
    ca, cert, key = (host.path(p) for p in CLIENT)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    return ctx


def gateway(endpoints: list[str], path: str, body: dict, timeout: float = 5) -> dict:
    last: Exception | None = None
    ctx = _context()
    for ep in endpoints:
        req = urllib.request.Request(ep.rstrip("/") + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            last = SimError(f"etcd at {ep} refused {path}: {e.read().decode(errors='replace')[:300]}")
        except (urllib.error.URLError, OSError) as e:
            last = e
    raise SimError(f"etcd cluster is unavailable or misconfigured (tried {', '.join(endpoints)}): {last}")


def add_member(endpoints: list[str], name: str, advertise: str) -> str:
    """``member add`` for this machine (or find the one a previous attempt added); the initial cluster."""
    peer = _url(advertise, 2380)
    deadline = time.time() + float(os.environ.get("KUBESIM_WAIT_SECONDS", "60"))
    while True:
        try:
            members = gateway(endpoints, "/v3/cluster/member/list", {}).get("members") or []
            if not any(peer in (m.get("peerURLs") or []) for m in members):
                members = gateway(endpoints, "/v3/cluster/member/add", {"peerURLs": [peer]}).get("members") or []
            break
        except SimError:
            # etcd refuses an add while a member added just before has not started yet; kubeadm retries
            if time.time() > deadline:
                raise
            time.sleep(1)
    parts = []
    for m in members:
        urls = m.get("peerURLs") or []
        # etcd matches an existing cluster by peer URLs; a member added but not started has no name yet
        parts.append(f"{name if peer in urls else (m.get('name') or 'unstarted-' + str(m.get('ID')))}={urls[0]}")
    return ",".join(parts)


def remove_member(name: str, endpoints: list[str]) -> str | None:
    """kubeadm reset's first step on a stacked control plane; None when this is the only member."""
    members = gateway(endpoints, "/v3/cluster/member/list", {}).get("members") or []
    mine = [m for m in members if m.get("name") == name]
    if not mine or len(members) == 1:
        return None
    gateway(endpoints, "/v3/cluster/member/remove", {"ID": mine[0]["ID"]})
    return mine[0]["ID"]


def healthy(endpoint: str = "https://127.0.0.1:2379") -> bool:
    """A linearizable read answered by the local member, as kube-apiserver's etcd health check does."""
    try:
        gateway([endpoint], "/v3/kv/range", {"key": "aGVhbHRo"}, timeout=2)
        return True
    except (SimError, OSError, ssl.SSLError):
        return False
