"""Helpers for running simulated machines inside one test process (each with its own root directory)."""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import threading

from .kubesim import host, kubeadm, kubectl
from .kubesim.kubelet import Kubelet

CONTAINERD_STATUS = "Package: containerd\nStatus: install ok installed\nVersion: 1.6.20~ds1-1+b1\n\n"


def make_machine(root: str, hostname: str, version: str, kubelet_version: str | None = None,
                 containerd: bool = True, swap: bool = False) -> str:
    """A directory that looks enough like a lab machine with the simulator packages installed."""
    for comp, v in (("kubeadm", version), ("kubectl", version), ("kubelet", kubelet_version or version)):
        os.makedirs(os.path.join(root, f"usr/lib/kubesim/{v.lstrip('v')}/{comp}"), exist_ok=True)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    os.makedirs(os.path.join(root, "var/lib/dpkg"), exist_ok=True)
    with open(os.path.join(root, "etc/hostname"), "w") as f:
        f.write(hostname + "\n")
    with open(os.path.join(root, "proc/swaps"), "w") as f:
        f.write("Filename\tType\tSize\tUsed\tPriority\n" + ("/swapfile file 1024 0 -2\n" if swap else ""))
    with open(os.path.join(root, "var/lib/dpkg/status"), "w") as f:
        f.write(CONTAINERD_STATUS if containerd else "")
    return root


def set_kubelet_package(root: str, version: str) -> None:
    """What `apt-get install kubelet=X` does to the simulator's library directory."""
    import glob
    import shutil

    for d in glob.glob(os.path.join(root, "usr/lib/kubesim/*/kubelet")):
        shutil.rmtree(d)
    os.makedirs(os.path.join(root, f"usr/lib/kubesim/{version.lstrip('v')}/kubelet"))


class KubeletThread:
    """A kubelet process stand-in: ticks (static pods + heartbeat) every ``interval`` seconds."""

    def __init__(self, root: str, version: str, restart: bool = False, interval: float = 0.1) -> None:
        self.root, self.restart, self.interval = root, restart, interval
        self.kubelet = Kubelet(version, log=lambda m: None)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,), daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with host.use_root(self.root):
            while not self._stop.is_set():
                if host.exists("/var/lib/kubelet/config.yaml"):
                    try:
                        self.kubelet.sync_static_pods()
                        self.kubelet.heartbeat(self.restart)
                    except (host.SimError, OSError, ValueError, KeyError) as e:
                        self.errors.append(str(e))
                else:
                    self.kubelet.stop_api()
                self._stop.wait(self.interval)
            self.kubelet.stop_api()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def run(tool: str, root: str, argv: list[str], version: str, stdin: str = "") -> tuple[int, str, str]:
    """Run kubeadm or kubectl's main() as if on the machine at ``root``; returns (rc, stdout, stderr)."""
    import sys

    main = {"kubeadm": kubeadm.main, "kubectl": kubectl.main}[tool]
    out, err = io.StringIO(), io.StringIO()
    old_in = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with host.use_root(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv, version)
    finally:
        sys.stdin = old_in
    return rc, out.getvalue(), err.getvalue()


class KubeletService:
    """The kubelet as a real process under a tiny supervisor with systemd's Restart=always semantics."""

    def __init__(self, root: str, version: str, env: dict[str, str], restart_sec: float = 0.2) -> None:
        import subprocess
        import sys

        sim_dir = os.path.dirname(os.path.abspath(__file__))
        code = (f"import sys; sys.path.insert(0, {sim_dir!r}); from kubesim import kubelet; "
                f"sys.exit(kubelet.main(sys.argv[1:], {version!r}))")
        self.argv = [sys.executable, "-I", "-c", code, "--config=/var/lib/kubelet/config.yaml"]
        self.env = dict(env, KUBESIM_ROOT=root)
        self.exits: list[int] = []
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self._popen = subprocess.Popen
        self._stop = threading.Event()
        self._restart_sec = restart_sec
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import subprocess

        while not self._stop.is_set():
            self.proc = self._popen(self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.starts += 1
            _, err = self.proc.communicate()
            self.last_stderr = err.decode(errors="replace")
            self.exits.append(self.proc.returncode)
            self._stop.wait(self._restart_sec)

    def restart(self) -> None:
        """`systemctl restart kubelet`: SIGTERM, and the supervisor starts a new process."""
        starts = self.starts
        if self.proc is not None:
            self.proc.terminate()
        import time

        deadline = time.time() + 10
        while self.starts == starts and time.time() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None:
            self.proc.terminate()
        self._thread.join(10)
        from .kubesim import staticpod

        with host.use_root(self.env["KUBESIM_ROOT"]):
            staticpod.kill_running()
