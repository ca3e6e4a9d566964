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
"""

from __future__ import annotations

import re
import socket

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


def runtime_driver() -> str:
    try:
        text = host.read(CONTAINERD_CONFIG)
    except OSError:
        return "cgroupfs"
    return "systemd" if re.search(r"(?m)^\s*SystemdCgroup\s*=\s*true\s*$", text) else "cgroupfs"


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
