"""The route to a host as ``ssh`` would take it: the OpenSSH client config (``~/.ssh/config`` or the
inventory's ``ssh.sshConfig``) read with paramiko's SSHConfig for HostName, User, Port, IdentityFile
and ProxyJump, with what the inventory wrote itself winning (as ``ssh -l/-p/-i/-J`` win).

A route is the jump hosts in order, then the target. Each jump is looked up in the config too, as
ssh does for ``-J`` hops. Not supported (and said so rather than ignored): ProxyCommand, and a
jump host's own ProxyJump (write the whole chain on the target instead: ``ProxyJump a,b``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from kubeforge.errors import TransportError
from kubeforge.model.cluster import Host

MAX_CONFIG = 1 << 20  # an ssh config is a few KB; more is not one


@dataclass(frozen=True)
class Hop:
    """One SSH connection of a route: a jump host or the target."""

    label: str  # for messages: the inventory name, or "jump host <name>"
    address: str  # what is connected to, and the known_hosts name (ssh uses HostName for both)
    port: int
    user: str
    identity_files: tuple[Path, ...]
    host_key: str | None = None  # pinned key, from the inventory


_cache: dict[tuple[str, float], paramiko.SSHConfig] = {}
_cache_lock = threading.Lock()


def _default_path() -> Path:
    return Path(os.path.expanduser("~")) / ".ssh" / "config"


def load_config(path: Path | None, host: str) -> paramiko.SSHConfig | None:
    """The parsed config, None when there is none to read. Raises TransportError when it cannot be
    read: connecting with a config ssh itself would use, but without it, could reach the wrong host."""
    if path is not None and str(path) == "none":
        return None
    p = path or _default_path()
    try:
        st = p.stat()
    except FileNotFoundError:
        if path is None:
            return None
        raise TransportError(host, f"ssh config {p} does not exist") from None
    except (OSError, ValueError) as exc:
        raise TransportError(host, f"cannot read ssh config {p}: {exc}") from None
    key = (str(p), st.st_mtime)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_CONFIG + 1)
        if len(text) > MAX_CONFIG:
            raise ValueError(f"larger than {MAX_CONFIG} bytes")
        config = paramiko.SSHConfig.from_text(text)
    except Exception as exc:  # noqa: BLE001 - paramiko raises several types for bad configs
        raise TransportError(host, f"cannot read ssh config {p}: {exc}") from None
    with _cache_lock:
        _cache[key] = config
    return config


def _lookup(config: paramiko.SSHConfig | None, name: str, host: str) -> dict:
    if config is None:
        return {}
    try:
        return dict(config.lookup(name))
    except Exception as exc:  # noqa: BLE001 - e.g. "Match exec" needs invoke, which we do not ship
        raise TransportError(host, f"ssh config entry for {name} cannot be used: {exc}") from None


def _identities(found: dict) -> tuple[Path, ...]:
    return tuple(Path(os.path.expanduser(p)) for p in found.get("identityfile", []))


def _split_jump(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` or ``ssh://[user@]host[:port]``; ``[v6]:port`` as well."""
    text = text.strip().removeprefix("ssh://")
    user, _, rest = text.rpartition("@")
    port = None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        if tail.startswith(":") and tail[1:].isdigit():
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, _, p = rest.partition(":")
        if not p.isdigit():
            raise ValueError(f"bad port in ProxyJump hop {text!r}")
        port = int(p)
    else:
        host = rest
    if not host:
        raise ValueError(f"empty host in ProxyJump hop {text!r}")
    return (user or None), host, port


def _port(value: object, host: str) -> int:
    try:
        port = int(str(value))
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise TransportError(host, f"ssh config: {str(value)[:20]!r} is not a port")
    return port


def route(target: Host) -> list[Hop]:
    """Jump hosts in order, then the target."""
    s = target.ssh
    config = load_config(s.ssh_config, target.name)
    found = _lookup(config, target.address, target.name)
    if "proxycommand" in found and "proxyjump" not in found and "bastion" not in s.given:
        raise TransportError(target.name, f"the ssh config sets ProxyCommand for {target.address}; kubeforge "
                             "supports ProxyJump (or ssh.bastion in the inventory), not ProxyCommand")
    inventory_identity = (s.identity_file,) if s.identity_file is not None else ()
    hops: list[Hop] = []
    if s.bastion is not None:
        b = s.bastion
        hops.append(Hop(f"{target.name} (bastion {b.address})", b.address, b.port, b.user or s.user,
                        (b.identity_file,) if b.identity_file else inventory_identity, b.host_key))
    elif found.get("proxyjump", "none").strip().lower() != "none":
        for raw in found["proxyjump"].split(","):
            try:
                user, name, port = _split_jump(raw)
            except ValueError as exc:
                raise TransportError(target.name, f"ssh config ProxyJump for {target.address}: {exc}") from None
            jump = _lookup(config, name, target.name)
            hops.append(Hop(
                f"{target.name} (jump host {name})", jump.get("hostname", name),
                port or _port(jump.get("port", 22), target.name), user or jump.get("user", s.user),
                _identities(jump) or inventory_identity,
            ))
    given = s.given
    hops.append(Hop(
        target.name,
        found.get("hostname", target.address),
        s.port if "port" in given or "port" not in found else _port(found["port"], target.name),
        s.user if "user" in given or "user" not in found else found["user"],
        inventory_identity if "identity_file" in given or not _identities(found) else _identities(found) + inventory_identity,
        target.host_key,
    ))
    return hops
