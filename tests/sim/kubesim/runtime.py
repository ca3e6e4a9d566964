"""What the kubelet checks of its machine and container runtime before and while it runs.

- swap: the kubelet refuses to start while /proc/swaps lists a device, unless its configuration says
  `failSwapOn: false` (KubeletConfiguration; kubernetes.io/docs/concepts/architecture/nodes/#swap-memory).
- CRI: the kubelet refuses to start without a live runtime socket (`containerRuntimeEndpoint`, or the
  `--container-runtime-endpoint` flag kubeadm writes, default unix:///run/containerd/containerd.sock);
  one that dies later turns the node NotReady ("container runtime is down").
- cgroup driver: the kubelet's `cgroupDriver` (KubeletConfiguration default `cgroupfs`; kubeadm writes
  `systemd`) must be the runtime's. containerd 1.6/1.7 cannot report its driver over the CRI, so the
  stand-in reads it where containerd does: `SystemdCgroup = true` under the runc options of
  /etc/containerd/config.toml means systemd, anything else cgroupfs (containerd's default). On a mismatch
  runc refuses every pod sandbox, so the CNI pod never runs there and the node stays NotReady
  (kubernetes.io/docs/setup/production-environment/container-runtimes/#cgroup-drivers).
  containerd reads that file only when it starts: on a machine (not in a test root) the driver is the
  file's as containerd's running process read it. The kubelet keeps, per containerd process, the
  driver the file named while it was no newer than that process; a file written since counts only
  after containerd restarts. (A kubelet that first sees a containerd after its file changed takes the
  file as read: it cannot know the earlier content.)
"""

from __future__ import annotations

import os
import re
import socket
import time

from . import files, host, yamlish

DEFAULT_ENDPOINT = "unix:///run/containerd/containerd.sock"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"


def config(path: str) -> dict:
    try:
        doc = yamlish.load(host.read(path))
    except (yamlish.YamlError, OSError):
        return {}
    return doc if isinstance(doc, dict) else {}


def swap_refusal(cfg: dict) -> str | None:
    if cfg.get("failSwapOn") is False or not host.swap_on():
        return None
    listed = host.read("/proc/swaps").strip().splitlines()[1:]
    return ('"command failed" err="failed to run Kubelet: running with swap on is not supported, please disable '
            f'swap or set --fail-swap-on flag to false. /proc/swaps contained: [{" ".join(listed)}]"')


def endpoint(cfg: dict) -> str:
    if host.exists(files.KUBELET_FLAGS):
        m = re.search(r"--container-runtime-endpoint=(\S+?)[\"\s]", host.read(files.KUBELET_FLAGS) + " ")
        if m:
            return m.group(1)
    return str(cfg.get("containerRuntimeEndpoint") or DEFAULT_ENDPOINT)


def cri_problem(cfg: dict) -> str | None:
    """None while the runtime socket accepts a connection, else the kubelet's error."""
    ep = endpoint(cfg)
    path = ep.removeprefix("unix://")
    if path.startswith("/var/run/"):
        path = path[len("/var"):]  # /var/run is a link to /run
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(host.path(path))
        return None
    except OSError as e:
        why = "no such file or directory" if isinstance(e, FileNotFoundError) else "connection refused"
        return (f'validate CRI v1 runtime API for endpoint "{ep}": rpc error: code = Unavailable desc = connection '
                f'error: desc = "transport: Error while dialing: dial unix {path}: connect: {why}"')
    finally:
        s.close()


def _driver_in(text: str | None) -> str:
    return "systemd" if text and re.search(r"(?m)^\s*SystemdCgroup\s*=\s*true\s*$", text) else "cgroupfs"


def containerd_process() -> tuple[int, float] | None:
    """The running containerd's pid and start time (epoch seconds); None in a test root or when none runs."""
    if host.in_test_root():
        return None
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            boot = time.time() - float(f.read().split()[0])  # to 10 ms (/proc/stat's btime is whole seconds)
        for pid in (d for d in os.listdir("/proc") if d.isdigit()):
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                    stat = f.read()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if comm == "containerd":
                return int(pid), boot + int(rest[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None
    return None


_LOADED: dict[int, str] = {}  # containerd's pid -> the driver its config named as that process read it


def runtime_driver() -> str:
    try:
        text: str | None = host.read(CONTAINERD_CONFIG)
        mtime = os.stat(host.path(CONTAINERD_CONFIG)).st_mtime
    except OSError:
        text, mtime = None, 0.0
    running = containerd_process()
    if running is None:
        return _driver_in(text)
    pid, started = running
    if pid not in _LOADED and mtime <= started:
        _LOADED[pid] = _driver_in(text)
    return _LOADED.get(pid, _driver_in(text))


def cgroup_problem(cfg: dict) -> str | None:
    mine, theirs = str(cfg.get("cgroupDriver") or "cgroupfs"), runtime_driver()
    if mine == theirs:
        return None
    return (f'failed to create pod sandbox: OCI runtime create failed: the kubelet\'s cgroup driver "{mine}" is not '
            f'the container runtime\'s "{theirs}" ({CONTAINERD_CONFIG}): set the same driver on both')


def problem(cfg: dict) -> str | None:
    """Why the node is not Ready on the runtime's side, checked at every kubelet sync."""
    down = cri_problem(cfg)
    if down is not None:
        return f"container runtime is down: {down}"
    return cgroup_problem(cfg)
