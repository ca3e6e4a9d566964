"""`kubeadm` stand-in: init, join, upgrade plan|apply|node, reset, token, upload-certs, version, config validate,
kubeconfig user, certs renew|check-expiration."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time

from . import client, files, host, kconfig, kvalues, yamlish
from .host import SimError, parse_version

DEFAULT_TOKEN_TTL = 86400.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise SimError(message.replace("unrecognized arguments:", "unknown flag:"))


def duration(text) -> float:
    if text is None:
        return DEFAULT_TOKEN_TTL
    total = 0.0
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)", str(text)):
        total += float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


def token_parts(token: str) -> tuple[str, str]:
    m = re.fullmatch(r"([a-z0-9]{6})\.([a-z0-9]{16})", token or "")
    if not m:
        raise SimError(f'the bootstrap token "{token[:6] if token else ""}..." was not of the form '
                       '"^([a-z0-9]{6})\\.([a-z0-9]{16})$"')
    return m.group(1), hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(6)) + "." + "".join(secrets.choice(alphabet) for _ in range(16))


def key_hash(key: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", key or ""):
        raise SimError("invalid certificate key: it must be a 32 byte hex-encoded string (64 characters)")
    return hashlib.sha256(key.encode()).hexdigest()


def _preflight(checks: list[tuple[str, str | None]], ignore: list[str]) -> None:
    ignored = {i.strip().lower() for i in ignore}
    errors = [(n, msg) for n, msg in checks if msg and "all" not in ignored and n.lower() not in ignored]
    for n, msg in checks:
        if msg and (n, msg) not in errors:
            print(f"\t[WARNING {n}]: {msg}", file=sys.stderr)
    if errors:
        lines = "".join(f"\t[ERROR {n}]: {msg}\n" for n, msg in errors)
        raise SimError(f"[preflight] Some fatal errors occurred:\n{lines}[preflight] If you know what you are doing, "
                       f"you can make a check non-fatal with `--ignore-preflight-errors=...`\n"
                       f"error execution phase preflight: preflight checks failed")


def _node_checks(version: str) -> list[tuple[str, str | None]]:
    kubelet = host.installed_version("kubelet")
    kv_msg = None
    if kubelet is None:
        kv_msg = "couldn't get kubelet version: executable file \"kubelet\" not found in $PATH"
    elif parse_version(kubelet)[:2] != parse_version(version)[:2]:
        kv_msg = (f'the kubelet version "{kubelet}" does not match the minor of kubeadm "{version}"; '
                  f'install the kubelet of the same minor')
    return [("Swap", "running with swap on is not supported. Please disable swap" if host.swap_on() else None),
            ("CRI", None if host.containerd_installed() else
             "container runtime is not running: containerd is not installed (dpkg -s containerd)"),
            ("KubeletVersion", kv_msg)]


def _local_ip(toward: str) -> str:
    """The source address this machine would use to reach ``toward`` (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((toward, 6443))
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def restart_kubelet() -> None:
    # kubeadm's own (re)start of the kubelet at init/join is not an operator restarting a busy node
    host.remove("/run/kubesim/kubelet.started")
    if host.in_test_root():
        return  # tests drive the kubelet in-process
    subprocess.run(["systemctl", "restart", "kubelet.service"], capture_output=True)


def wait_healthy(bases: list[str], what: str) -> None:
    deadline = time.time() + float(os.environ.get("KUBESIM_WAIT_SECONDS", "60"))
    while True:
        try:
            status, _ = client.request(bases, "GET", "/healthz", timeout=2)
            if status == 200:
                return
        except SimError:
            pass
        if time.time() > deadline:
            raise SimError(f"{what}: timed out waiting for the API server at {bases[0]}")
        time.sleep(0.1)


def _load_config(path: str | None, version: str | None = None) -> dict[str, dict]:
    if not path:
        return {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise SimError(f"unable to read config from \"{path}\": {e.strerror}") from None
    return kconfig.parse(text, path, kubeadm_version=version)


def _server_bases(kubeconfig_path: str) -> list[str]:
    bases = [client.from_kubeconfig(host.path(kubeconfig_path))]
    local = client.local(bases[0])
    if files.read_manifest("kube-apiserver") and local not in bases:
        bases.append(local)  # a control plane can always reach its own API server
    return bases


def _set_flags(a, argv: list[str]) -> list[str]:
    """The flags given on the command line (pflag's "changed"), by name, for ValidateMixedArguments."""
    names = [w[2:].split("=", 1)[0] for w in argv if w.startswith("--")]
    return list(dict.fromkeys(names))


def cmd_init(a, version: str) -> int:
    from .kubeadm_phases import init

    kvalues.refuse_mixed_flags(_set_flags(a, a.argv))
    return init(a, version, _load_config(a.config, version))


def cmd_join(a, version: str) -> int:
    from .kubeadm_phases import join

    kvalues.refuse_mixed_flags(_set_flags(a, a.argv))
    return join(a, version, _load_config(a.config, version))


def cmd_upgrade(a, version: str) -> int:
    from .kubeadm_phases import upgrade

    return upgrade(a, version, _load_config(a.config, version))


def cmd_reset(a, version: str) -> int:
    from .kubeadm_phases import reset

    return reset(a, version)


def cmd_token(a, version: str) -> int:
    bases = _server_bases("/etc/kubernetes/admin.conf")
    if a.action == "create":
        # like kubeadm, the token (and its ttl) may come from the InitConfiguration's bootstrapTokens
        first = ((_load_config(a.config, version).get("InitConfiguration") or {}).get("bootstrapTokens") or [{}])[0]
        token = a.token or first.get("token") or new_token()
        tid, th = token_parts(token)
        client.op(bases, "token_create", {"id": tid, "hash": th, "ttl": duration(a.ttl or first.get("ttl"))})
        if a.print_join_command:
            st = client.get(bases, "/kubesim/state")
            endpoint = st.get("controlPlaneEndpoint") or f"{st.get('primary')}:6443"
            pins = "".join(f"--discovery-token-ca-cert-hash {h} " for h in st.get("caCertHashes") or [st["caCertHash"]])
            print(f"kubeadm join {endpoint} --token {token} {pins}")
        else:
            print(token)
        return 0
    raise SimError(f"unknown token action {a.action}")


def cmd_init_phase(a, version: str) -> int:
    from . import kubeadm_certs

    if a.name == "certs":
        return kubeadm_certs.init_phase_certs(a, version, _load_config(a.config, version))
    if a.name == "upload-config":
        return kubeadm_certs.upload_config(a, version, _load_config(a.config, version))
    return cmd_upload_certs(a, version)


def cmd_upload_certs(a, version: str) -> int:
    cfg = _load_config(a.config, version)
    key = a.certificate_key or (cfg.get("InitConfiguration") or {}).get("certificateKey") or secrets.token_hex(32)
    client.op(_server_bases("/etc/kubernetes/admin.conf"), "upload_certs", {"certKeyHash": key_hash(key)})
    print('[upload-certs] Storing the certificates in Secret "kubeadm-certs" in the "kube-system" Namespace')
    print(f"[upload-certs] Using certificate key:\n{key}")
    return 0


def cmd_version(a, version: str) -> int:
    major, minor, _ = parse_version(version)
    info = {"major": str(major), "minor": str(minor), "gitVersion": version, "platform": "linux/amd64"}
    if a.output == "short":
        print(version)
    elif a.output == "json":
        print(json.dumps({"clientVersion": info}, indent=2))
    elif a.output == "yaml":
        print(yamlish.dump({"clientVersion": info}), end="")
    else:
        print(f"kubeadm version: &version.Info{{Major:\"{major}\", Minor:\"{minor}\", GitVersion:\"{version}\"}}")
    return 0


def cmd_config(a, version: str) -> int:
    if a.action != "validate":
        raise SimError(f"unknown config action {a.action} (the simulator supports: validate)")
    if not a.config:
        raise SimError("the --config flag is mandatory")
    _load_config(a.config, version)
    print("ok")
    return 0


def cmd_kubeconfig_user(a, version: str) -> int:
    from .user_kubeconfig import user

    return user(a, _load_config)


def parser() -> _Parser:
    p = _Parser(prog="kubeadm")
    p.add_argument("-v", "--v", default=None)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = [("--config",), ("--ignore-preflight-errors",), ("--node-name",), ("--cri-socket",)]

    def add(name, fn, *extra):
        sp = sub.add_parser(name)
        sp.set_defaults(fn=fn)
        for flags in common + list(extra):
            if not flags[0].startswith("-"):
                sp.add_argument(*flags, nargs="?")
            elif flags[0] == "--ignore-preflight-errors":
                sp.add_argument(*flags, action="append", default=[])
            else:
                sp.add_argument(*flags)
        sp.add_argument("-v", "--v", default=None)
        return sp

    i = add("init", cmd_init, ("--apiserver-advertise-address",), ("--kubernetes-version",),
            ("--control-plane-endpoint",), ("--certificate-key",), ("--token",), ("--skip-phases",))
    i.add_argument("--upload-certs", action="store_true")
    isub = i.add_subparsers(dest="phase")
    ph = isub.add_parser("phase")
    ph.add_argument("name", choices=["upload-certs", "certs", "upload-config"])
    ph.add_argument("what", nargs="?")
    ph.add_argument("--upload-certs", action="store_true")
    ph.add_argument("--certificate-key")
    ph.add_argument("--config")
    ph.set_defaults(fn=cmd_init_phase)
    j = add("join", cmd_join, ("endpoint",), ("--token",), ("--discovery-token",), ("--tls-bootstrap-token",),
            ("--certificate-key",), ("--apiserver-advertise-address",))
    j.add_argument("--discovery-token-ca-cert-hash", action="append", default=[])
    j.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true")
    j.add_argument("--control-plane", action="store_true")
    u = add("upgrade", cmd_upgrade, ("action",), ("target",), ("--etcd-upgrade",), ("--certificate-renewal",))
    u.add_argument("-y", "--yes", action="store_true")
    u.add_argument("-f", "--force", action="store_true")
    r = add("reset", cmd_reset, ("--cleanup-tmp-dir",))
    r.add_argument("-f", "--force", action="store_true")
    t = sub.add_parser("token")
    t.add_argument("action", choices=["create", "list"])
    t.add_argument("token", nargs="?")
    t.add_argument("--ttl")
    t.add_argument("--print-join-command", action="store_true")
    t.add_argument("--kubeconfig")
    t.add_argument("--config")
    t.set_defaults(fn=cmd_token)
    v = sub.add_parser("version")
    v.add_argument("-o", "--output", default="")
    v.set_defaults(fn=cmd_version)
    c = sub.add_parser("config")
    c.add_argument("action")
    c.add_argument("--config")
    c.set_defaults(fn=cmd_config)
    from . import kubeadm_certs

    certs = sub.add_parser("certs").add_subparsers(dest="action", required=True)
    cr = certs.add_parser("renew")
    cr.add_argument("name")
    cr.add_argument("--config")
    cr.add_argument("-v", "--v", default=None)
    cr.set_defaults(fn=kubeadm_certs.renew)
    ce = certs.add_parser("check-expiration")
    ce.add_argument("--config")
    ce.add_argument("-v", "--v", default=None)
    ce.set_defaults(fn=kubeadm_certs.check_expiration)
    kc = sub.add_parser("kubeconfig").add_subparsers(dest="action", required=True).add_parser("user")
    kc.add_argument("--client-name")
    kc.add_argument("--config")
    kc.add_argument("--org", action="append")
    kc.add_argument("--token")
    kc.add_argument("--validity-period", default="8760h0m0s")
    kc.add_argument("-v", "--v", default=None)
    kc.set_defaults(fn=cmd_kubeconfig_user)
    return p


def main(argv: list[str], version: str) -> int:
    try:
        a = parser().parse_args(argv)
        a.argv = list(argv)
        return a.fn(a, version)
    except SimError as e:
        print(e.message if e.message.startswith(("[preflight]", "[upgrade", "error")) else f"error: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
