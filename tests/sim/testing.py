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
                 containerd: bool = True, swap: bool = False, route: bool = True) -> str:
    """A directory that looks enough like a lab machine with the simulator packages installed."""
    for comp, v in (("kubeadm", version), ("kubectl", version), ("kubelet", kubelet_version or version)):
        os.makedirs(os.path.join(root, f"usr/lib/kubesim/{v.lstrip('v')}/{comp}"), exist_ok=True)
    os.makedirs(os.path.join(root, "etc"), exist_ok=True)
    os.makedirs(os.path.join(root, "proc"), exist_ok=True)
    os.makedirs(os.path.join(root, "var/lib/dpkg"), exist_ok=True)
    with open(os.path.join(root, "etc/hostname"), "w") as f:
        f.write(hostname + "\n")
    os.makedirs(os.path.join(root, "proc/sys/net/ipv4"), exist_ok=True)
    with open(os.path.join(root, "proc/sys/net/ipv4/ip_forward"), "w") as f:
        f.write("1\n")  # kubeforge's sysctls turn forwarding on; kubeadm's preflight needs it
    with open(os.path.join(root, "proc/swaps"), "w") as f:
        f.write("Filename\tType\tSize\tUsed\tPriority\n" + ("/swapfile file 1024 0 -2\n" if swap else ""))
    with open(os.path.join(root, "var/lib/dpkg/status"), "w") as f:
        f.write(CONTAINERD_STATUS if containerd else "")
    # no containerd in-process: the machine's image list is a file (kubesim/images.py FileStore); a
    # default route, so upstream registries answer as on a connected machine
    os.makedirs(os.path.join(root, "var/lib/kubesim"), exist_ok=True)
    with open(os.path.join(root, "var/lib/kubesim/test-images.json"), "w") as f:
        f.write("[]")
    os.makedirs(os.path.join(root, "proc/net"), exist_ok=True)
    with open(os.path.join(root, "proc/net/route"), "w") as f:
        f.write(ROUTES if route else ROUTES.split("\n", 1)[0] + "\n")
    return root


ROUTES = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
          "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")


class RuntimeSocket:
    """A live socket where containerd's would be (the kubelet stand-in only checks that it accepts a
    connection), with containerd's config saying SystemdCgroup = true as kubeforge writes it."""

    def __init__(self, root: str) -> None:
        import socket

        path = os.path.join(root, "run/containerd/containerd.sock")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.makedirs(os.path.join(root, "etc/containerd"), exist_ok=True)
        with open(os.path.join(root, "etc/containerd/config.toml"), "w") as f:
            f.write('[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n')
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(64)
        # accepted and closed, as containerd answers each dial: a backlog never taken would refuse
        # the kubelet's checks (one per sync) once 64 wait, within a minute of a test
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self._closed.set()
        self.sock.close()
        if os.path.exists(self.path):
            os.unlink(self.path)


def kubectl_on_path(bin_dir: str, root: str, version: str, port: str) -> dict[str, str]:
    """An environment whose `kubectl` is the simulator's, run as a process on the machine at ``root``,
    for running kubeforge's own shell scripts against the simulator."""
    import sys

    sim_dir = os.path.dirname(os.path.abspath(__file__))
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "kubectl")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"exec {sys.executable} -c 'import sys; sys.path.insert(0, \"{sim_dir}\"); from kubesim import kubectl; "
                f"sys.exit(kubectl.main(sys.argv[1:], \"{version}\"))' \"$@\"\n")
    os.chmod(path, 0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", KUBESIM_ROOT=root, KUBESIM_API_PORT=port)


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


class LoopbackEtcd:
    """A one-member etcd on 127.0.0.1 with client-certificate TLS, as the lab's members run."""

    def __init__(self, workdir: str, data_dir: str | None = None) -> None:
        import socket
        import subprocess

        self.dir = workdir
        self.data_dir = data_dir or os.path.join(workdir, "data")
        if not os.path.exists(os.path.join(workdir, "ca.crt")):
            self._pki()
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        self.url = f"https://127.0.0.1:{ports[0]}"
        peer = f"http://127.0.0.1:{ports[1]}"
        self.proc = subprocess.Popen(
            ["etcd", "--name", "m1", "--data-dir", self.data_dir, "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"m1={peer}", "--client-cert-auth", "--trusted-ca-file", self.ca,
             "--cert-file", f"{workdir}/server.crt", "--key-file", f"{workdir}/server.key"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait()

    @property
    def ca(self) -> str:
        return os.path.join(self.dir, "ca.crt")

    @property
    def client_pair(self) -> tuple[str, str]:
        return os.path.join(self.dir, "client.crt"), os.path.join(self.dir, "client.key")

    def store(self):
        from .kubesim.store import EtcdStore

        return EtcdStore([self.url], self.ca, *self.client_pair)

    def _pki(self) -> None:
        import subprocess

        d = self.dir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]

        def ossl(*args: str) -> None:
            subprocess.run(["openssl", *args], check=True, capture_output=True)

        ossl("req", "-x509", *ec, "-days", "1", "-subj", "/CN=etcd-ca", "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")
        for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
            ossl("req", *ec, "-subj", f"/CN={name}", "-keyout", f"{d}/{name}.key", "-out", f"{d}/{name}.csr")
            with open(f"{d}/{name}.ext", "w") as f:
                f.write(ext + "\n")
            ossl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
                 "-CAcreateserial", "-days", "1", "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.crt")

    def _wait(self) -> None:
        import time

        deadline = time.time() + 15
        while True:
            try:
                self.store().read()
                return
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise
                time.sleep(0.1)

    def etcdctl(self, *args: str):
        import subprocess

        cert, key = self.client_pair
        env = dict(os.environ, ETCDCTL_API="3")
        return subprocess.run(["etcdctl", f"--endpoints={self.url}", f"--cacert={self.ca}", f"--cert={cert}",
                               f"--key={key}", *args], capture_output=True, text=True, env=env)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class LoopbackApiPki:
    """A cluster CA in ``workdir`` with a serving certificate for 127.0.0.1 and an admin client
    certificate, for tests that run API servers directly: the API server serves only TLS and
    authenticates every request (kubesim/tls.py)."""

    def __init__(self, workdir: str) -> None:
        import subprocess
        import time

        from .kubesim import tls

        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        ca, key = f"{workdir}/ca.crt", f"{workdir}/ca.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=kubernetes", "-keyout", key, "-out", ca], check=True, capture_output=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-days", "1", "-subj", "/CN=kube-apiserver", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-CA", ca, "-CAkey", key, "-keyout", f"{workdir}/apiserver.key", "-out", f"{workdir}/apiserver.crt"],
                       check=True, capture_output=True)
        self.ca_pair = (ca, key)
        crt, ckey = tls.client_certificate_from(*self.ca_pair, "kubernetes-admin", ["kubeadm:cluster-admins"],
                                                time.time() + 3600)
        self.admin = self.kubeconfig(crt, ckey)

    def server_context(self):
        from .kubesim import tls

        return tls.server_context((f"{self.dir}/apiserver.crt", f"{self.dir}/apiserver.key"), self.ca_pair[0])

    def kubeconfig(self, crt: bytes, key: bytes) -> str:
        import base64

        from .kubesim import yamlish

        path = f"{self.dir}/kubeconfig-{len(os.listdir(self.dir))}.conf"
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        with open(path, "w", encoding="utf-8") as f:
            f.write(yamlish.dump({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                                  "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443",
                                                "certificate-authority-data": b64(open(self.ca_pair[0], "rb").read())}}],
                                  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                                  "users": [{"name": "u", "user": {"client-certificate-data": b64(crt),
                                                                  "client-key-data": b64(key)}}]}))
        return path

    def bases(self, port: int) -> list[str]:
        """The admin's way to an API server on 127.0.0.1:``port``."""
        from .kubesim import client

        return [client.from_kubeconfig(self.admin, server=f"https://127.0.0.1:{port}")]
