"""The kube-apiserver static pod: served from the manifest, in this process or as its own process.

Real static pods are containers that outlive a kubelet restart; ``ApiServerProcess`` gives the same
property (the kubelet unit uses KillMode=process so systemd leaves it running). ``ApiServerPod`` is the
server itself, also used directly by in-process tests.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time

from . import files, host, tls
from .apiserver import ApiServer, LocalBackend, ProxyBackend
from .store import EtcdStore, FileStore

PID_FILE = "/run/kubesim/kube-apiserver.pid"
PROCESS_TAG = "kubesim-apiserver"


def make_backend(store: str, flags: dict[str, str]):
    if store == "etcd":
        return LocalBackend(EtcdStore([e for e in flags["etcd-servers"].split(",") if e],
                                      host.path(flags["etcd-cafile"]), host.path(flags["etcd-certfile"]),
                                      host.path(flags["etcd-keyfile"])))
    if store.startswith("file:"):
        return LocalBackend(FileStore(host.path(store[5:])))
    if store.startswith("proxy:"):
        return ProxyBackend(store[6:], host.path("/etc/kubernetes/admin.conf"))
    raise ValueError(f"unknown kubesim.io/store {store!r}")


def serving_context(flags: dict[str, str] | None = None) -> ssl.SSLContext | None:
    """kube-apiserver's TLS: its serving pair, --client-ca-file (the cluster CA) and, when the
    manifest has it, --requestheader-client-ca-file (the front-proxy CA), read when the pod starts."""
    pair = files.serving_cert()
    if pair is None:
        return None
    proxy_ca = (flags or {}).get("requestheader-client-ca-file")
    try:
        return tls.server_context(pair, host.path(f"{files.PKI}/ca.crt"), host.path(proxy_ca) if proxy_ca else None)
    except (OSError, ssl.SSLError):
        return None


def request_header(flags: dict[str, str]) -> tls.RequestHeader | None:
    proxy_ca = flags.get("requestheader-client-ca-file")
    try:
        return tls.RequestHeader.from_flags(flags, host.path(proxy_ca)) if proxy_ca else None
    except (OSError, ssl.SSLError):
        return None


def signing_pair() -> tuple[str, str] | None:
    """The cluster CA's files, with which this API server signs joining kubelets' certificates."""
    crt, key = host.path(f"{files.PKI}/ca.crt"), host.path(f"{files.PKI}/ca.key")
    return (crt, key) if os.path.exists(crt) and os.path.exists(key) else None


def manifest_version(pod: dict) -> str:
    notes = pod["metadata"].get("annotations") or {}
    return notes.get("kubesim.io/version") or pod["spec"]["containers"][0]["image"].rsplit(":", 1)[-1]


class ApiServerPod:
    def __init__(self, log) -> None:
        self.log = log
        self.servers: list[ApiServer] = []
        self.key: tuple | None = None

    @property
    def running(self) -> bool:
        return bool(self.servers)

    def sync(self, pod: dict | None) -> None:
        if pod is None:
            self.stop()
            return
        notes = pod["metadata"].get("annotations") or {}
        flags = files.manifest_flags(pod)
        key = (notes.get("kubesim.io/store"), flags.get("advertise-address"), flags.get("etcd-servers"),
               flags.get("etcd-cafile"), flags.get("etcd-certfile"), flags.get("etcd-keyfile"))
        version = manifest_version(pod)
        if self.servers and self.key == key:
            for s in self.servers:
                s.version = version  # an upgraded manifest: the new "container" answers with the new version
            return
        self.stop()
        backend = make_backend(key[0], flags)
        ctx, front_proxy = serving_context(flags), request_header(flags)
        for addr in dict.fromkeys(["127.0.0.1"] + ([flags["advertise-address"]] if flags.get("advertise-address") else [])):
            try:
                self.servers.append(ApiServer(backend, version, [addr], ssl_ctx=ctx, client_ca_pair=signing_pair(),
                                              request_header=front_proxy))
            except OSError as e:
                self.log(f"kube-apiserver: cannot listen on {addr}: {e}")
        if self.servers:
            self.key = key
            self.log(f"kube-apiserver {version} serving (store {key[0]})")

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        self.servers, self.key = [], None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return PROCESS_TAG.encode() in f.read()
    except OSError:
        return False


def running_pid() -> int | None:
    try:
        pid = int(host.read(PID_FILE).strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def kill_running(wait: float = 5.0) -> None:
    """Stop the API server "container"; like kubeadm reset's container removal, return once it is gone
    (its port free for the next init's preflight)."""
    pid = running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + wait
        while running_pid() == pid and time.time() < deadline:
            time.sleep(0.05)


class ApiServerProcess:
    """Keeps one API server process per machine while the manifest exists."""

    def __init__(self, log) -> None:
        self.log = log

    @property
    def running(self) -> bool:
        return running_pid() is not None

    def sync(self, pod: dict | None) -> None:
        if pod is None:
            kill_running()
            return
        if running_pid() is not None:
            return
        libdir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = (f"import sys; sys.path.insert(0, {libdir!r}); from kubesim import staticpod; "
                f"sys.exit(staticpod.serve_main())")
        proc = subprocess.Popen([sys.executable, "-I", "-c", code, PROCESS_TAG], start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        host.write(PID_FILE, str(proc.pid))
        self.log(f"started kube-apiserver static pod (pid {proc.pid})")
        deadline = time.time() + 5
        while time.time() < deadline and proc.poll() is None and not _listening():
            time.sleep(0.05)

    def stop(self) -> None:
        """A kubelet that stops leaves its static pods running, as containers do."""


def _listening() -> bool:
    from . import client

    try:
        return client.request([client.local_probe()], "GET", "/healthz", timeout=1)[0] == 200
    except host.SimError:
        return False


def _name_process(name: str) -> None:
    """The process name `ss -p` and `ps` show (/proc/PID/comm), as the real container's binary has it:
    a port held by this process is held by kube-apiserver, not by "python3"."""
    import ctypes

    pr_set_name = 15
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_name, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def serve_main() -> int:
    """The static pod process: serve while the manifest exists, follow its changes, exit when it goes."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _name_process("kube-apiserver")
    pod = ApiServerPod(log=lambda m: None)
    try:
        while True:
            manifest = files.read_manifest("kube-apiserver")
            if manifest is None and not host.exists(f"{files.MANIFESTS}/kube-apiserver.yaml"):
                return 0
            if manifest is not None:
                pod.sync(manifest)
            time.sleep(0.5)
    finally:
        pod.stop()
