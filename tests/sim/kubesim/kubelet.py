"""`kubelet` stand-in: crash-loops without its config, "runs" static pods, heartbeats its node.

Running static pods means: while /etc/kubernetes/manifests/kube-apiserver.yaml exists, keep a simulated
API server process (staticpod.py) serving on the advertise address and 127.0.0.1, backed by the store
named in the manifest; while etcd.yaml exists (stacked etcd), keep a real etcd process running its
command with the etcd image's binary (etcdpod.py). Like containers, both survive kubelet restarts.
On the lab machines, kube-controller-manager and kube-scheduler serve their /healthz while their
manifests exist (components.py; threads of this process, so they stop with the kubelet).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from . import client, files, host, images, quick, runtime
from .components import COMPONENTS, ComponentPod
from .etcdpod import EtcdPod
from .staticpod import ApiServerPod, ApiServerProcess, manifest_version

STARTED_MARKER = "/run/kubesim/kubelet.started"


class Kubelet:
    def __init__(self, version: str, log=lambda msg: print(msg, file=sys.stderr, flush=True),
                 separate_process: bool = False) -> None:
        self.version = version
        self.log = log
        self.pod = ApiServerProcess(log) if separate_process else ApiServerPod(log)
        self.etcd = EtcdPod(log)
        self.components = [ComponentPod(n, log) for n in COMPONENTS] if separate_process else []
        self.images = images.PodImages(log)  # a static pod whose image containerd cannot have never runs
        self.apiserver_version: str | None = None
        self.announced = False
        # the process (the lab's kubelet) reads kubelet.conf once, when it first finds it, as the real
        # kubelet reads its kubeconfig when it starts: its CA and client certificate change only with a
        # restart (kubeadm init/join restart it after writing the file). The in-process kubelet of the
        # unit tests, never restarted by kubeadm there, reads it every tick.
        self.reads_once = separate_process
        self.kubeconfig: client.Base | None = None

    def sync_static_pods(self) -> None:
        self.etcd.sync(self.images.runnable(files.read_manifest("etcd")))
        manifest = self.images.runnable(files.read_manifest("kube-apiserver"))
        self.apiserver_version = manifest_version(manifest) if manifest is not None else None
        self.pod.sync(manifest)
        for c in self.components:
            c.sync(self.images.runnable(files.read_manifest(c.name)))

    def stop_api(self) -> None:
        self.pod.stop()
        for c in self.components:
            c.stop()

    def api_bases(self) -> list[str]:
        if not host.exists("/etc/kubernetes/kubelet.conf"):
            return []
        try:
            base = self.kubeconfig or client.from_kubeconfig(host.path("/etc/kubernetes/kubelet.conf"))
        except host.SimError:
            return []
        if self.reads_once:
            self.kubeconfig = base
        bases = [base]
        if self.apiserver_version is not None:
            bases.insert(0, client.local(bases[0]))  # a control plane's kubelet uses its own
        return bases

    def heartbeat(self, restart: bool, runtime_problem: str | None = None) -> dict | None:
        bases = self.api_bases()
        if not bases:
            return None
        name = files.node_name_from_flags() or host.hostname()
        args = {"node": name, "kubeletVersion": self.version, "apiserverVersion": self.apiserver_version,
                "runtimeProblem": runtime_problem}
        result = client.op(bases, "heartbeat", args, timeout=3)
        if result.get("known") and not self.announced:
            client.op(bases, "kubelet_started", {"node": name, "restart": restart, "kubeletVersion": self.version},
                      timeout=3)
            self.announced = True
        return result


def _config_path(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return files.KUBELET_CONFIG


def main(argv: list[str], version: str) -> int:
    if "--version" in argv or "version" in argv[:1]:
        print(quick.kubelet_version(version))
        return 0
    config = _config_path(argv)
    if not host.exists(config):
        print(f'E "command failed" err="failed to load kubelet config file, path: {config}, error: failed to load '
              f'Kubelet config file {config}, error failed to read kubelet config file "{config}", error: open '
              f'{config}: no such file or directory"', file=sys.stderr)
        return 1
    cfg = runtime.config(config)
    refusal = runtime.swap_refusal(cfg)
    if refusal is None and (down := runtime.cri_problem(cfg)) is not None:
        refusal = f'"command failed" err="failed to run Kubelet: validate service connection: {down}"'
    if refusal is not None:
        print(f"E {refusal}", file=sys.stderr)
        return 1
    # a marker in /run (tmpfs) tells a kubelet restart apart from the first start after a boot
    restart = host.exists(STARTED_MARKER)
    host.write(STARTED_MARKER, str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    kubelet = Kubelet(version, separate_process=True)
    print(f"kubelet {version} started (restart={restart})", file=sys.stderr, flush=True)
    interval = float(os.environ.get("KUBESIM_HEARTBEAT_SECONDS", "1"))
    try:
        while True:
            if not host.exists(config):
                print("kubelet config removed; exiting", file=sys.stderr, flush=True)
                return 1
            try:
                problem = runtime.problem(cfg)
                if problem is not None:
                    print(f"E kubelet: {problem}", file=sys.stderr, flush=True)
                kubelet.sync_static_pods()
                kubelet.heartbeat(restart, problem)
            except (host.SimError, OSError, ValueError, KeyError) as e:
                print(f"kubelet: {getattr(e, 'message', e)}", file=sys.stderr, flush=True)
            time.sleep(interval)
    finally:
        kubelet.stop_api()
