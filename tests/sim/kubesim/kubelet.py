"""`kubelet` stand-in: crash-loops without its config, "runs" static pods, heartbeats its node.

Running static pods means: while /etc/kubernetes/manifests/kube-apiserver.yaml exists, serve the
simulated API (in this process) on the advertise address and 127.0.0.1, backed by the store named in
the manifest; the etcd manifest of a stacked control plane needs no process of its own.
"""

from __future__ import annotations

import os
import signal
import ssl
import sys
import time

from . import client, files, host
from .apiserver import ApiServer, LocalBackend, ProxyBackend
from .store import EtcdStore, FileStore

STARTED_MARKER = "/run/kubesim/kubelet.started"


def make_backend(store: str, flags: dict[str, str]):
    if store == "etcd":
        return LocalBackend(EtcdStore([e for e in flags["etcd-servers"].split(",") if e],
                                      host.path(flags["etcd-cafile"]), host.path(flags["etcd-certfile"]),
                                      host.path(flags["etcd-keyfile"])))
    if store.startswith("file:"):
        return LocalBackend(FileStore(host.path(store[5:])))
    if store.startswith("proxy:"):
        return ProxyBackend(store[6:])
    raise ValueError(f"unknown kubesim.io/store {store!r}")


def serving_context() -> ssl.SSLContext | None:
    pair = files.serving_cert()
    if pair is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(*pair)
    except (OSError, ssl.SSLError):
        return None
    return ctx


class Kubelet:
    def __init__(self, version: str, log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> None:
        self.version = version
        self.api: ApiServer | None = None
        self.api_key: tuple | None = None
        self.log = log
        self.announced = False

    def sync_static_pods(self) -> None:
        pod = files.read_manifest("kube-apiserver")
        if pod is None:
            self.stop_api()
            return
        notes = pod["metadata"].get("annotations") or {}
        flags = files.manifest_flags(pod)
        key = (notes.get("kubesim.io/store"), flags.get("advertise-address"), flags.get("etcd-servers"),
               flags.get("etcd-cafile"), flags.get("etcd-certfile"), flags.get("etcd-keyfile"))
        version = notes.get("kubesim.io/version") or pod["spec"]["containers"][0]["image"].rsplit(":", 1)[-1]
        if self.api is not None and self.api_key == key:
            self.api.version = version
            return
        self.stop_api()
        backend = make_backend(key[0], flags)
        addrs = list(dict.fromkeys(["127.0.0.1"] + ([flags["advertise-address"]] if flags.get("advertise-address") else [])))
        bound = []
        ctx = serving_context()
        for addr in addrs:
            try:
                bound.append(ApiServer(backend, version, [addr], ssl_ctx=ctx))
            except OSError as e:
                self.log(f"kube-apiserver: cannot listen on {addr}: {e}")
        if bound:
            self.api = _Group(bound)
            self.api_key = key
            self.log(f"kube-apiserver {version} serving on {', '.join(a for a in addrs)} (store {key[0]})")

    def stop_api(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api, self.api_key = None, None

    def api_bases(self) -> list[str]:
        bases = []
        if host.exists("/etc/kubernetes/kubelet.conf"):
            try:
                bases.append(client.base_url(host.kubeconfig_server("/etc/kubernetes/kubelet.conf")))
            except host.SimError:
                pass
        if self.api is not None:
            bases.insert(0, f"http://127.0.0.1:{client.api_port()}")  # a control plane's kubelet uses its own
        return bases

    def heartbeat(self, restart: bool) -> dict | None:
        bases = self.api_bases()
        if not bases:
            return None
        name = files.node_name_from_flags() or host.hostname()
        args = {"node": name, "kubeletVersion": self.version,
                "apiserverVersion": self.api.version if self.api is not None else None}
        result = client.op(bases, "heartbeat", args, timeout=3)
        if result.get("known") and not self.announced:
            client.op(bases, "kubelet_started", {"node": name, "restart": restart, "kubeletVersion": self.version},
                      timeout=3)
            self.announced = True
        return result


class _Group:
    def __init__(self, servers: list[ApiServer]) -> None:
        self.servers = servers

    @property
    def version(self) -> str:
        return self.servers[0].version

    @version.setter
    def version(self, v: str) -> None:
        for s in self.servers:
            s.version = v

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


def _config_path(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return files.KUBELET_CONFIG


def main(argv: list[str], version: str) -> int:
    if "--version" in argv or "version" in argv[:1]:
        print(f"Kubernetes {version}")
        return 0
    config = _config_path(argv)
    if not host.exists(config):
        print(f'E "command failed" err="failed to load kubelet config file, path: {config}, error: failed to load '
              f'Kubelet config file {config}, error failed to read kubelet config file "{config}", error: open '
              f'{config}: no such file or directory"', file=sys.stderr)
        return 1
    # a marker in /run (tmpfs) tells a kubelet restart apart from the first start after a boot
    restart = host.exists(STARTED_MARKER)
    host.write(STARTED_MARKER, str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    kubelet = Kubelet(version)
    print(f"kubelet {version} started (restart={restart})", file=sys.stderr, flush=True)
    interval = float(os.environ.get("KUBESIM_HEARTBEAT_SECONDS", "1"))
    try:
        while True:
            if not host.exists(config):
                print("kubelet config removed; exiting", file=sys.stderr, flush=True)
                return 1
            try:
                kubelet.sync_static_pods()
                kubelet.heartbeat(restart)
            except (host.SimError, OSError, ValueError, KeyError) as e:
                print(f"kubelet: {getattr(e, 'message', e)}", file=sys.stderr, flush=True)
            time.sleep(interval)
    finally:
        kubelet.stop_api()
