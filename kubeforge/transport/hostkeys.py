"""Host key verification: known_hosts (plain, hashed, ``[host]:port``) or a key pinned in the
inventory. Unknown keys are refused unless the policy is accept-new; changed keys always are.

Never paramiko's AutoAddPolicy: a key is trusted only because the operator said so.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from kubeforge.errors import HostKeyError
from kubeforge.model.cluster import HostKeyPolicy

log = logging.getLogger("kubeforge.transport")

# accept-new appends from many threads at once; one writer at a time keeps lines whole.
_KNOWN_HOSTS_LOCK = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: ``SHA256:<base64 without padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def parse_pinned(text: str) -> paramiko.PKey:
    """``"ssh-ed25519 AAAA... [comment]"`` -> key. Raises ValueError when it is not a public key."""
    parts = text.split()
    if len(parts) < 2:
        raise ValueError(f"not an SSH public key: {text[:40]!r}")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:  # noqa: BLE001 - paramiko raises several types for bad keys
        raise ValueError(f"not an SSH public key ({exc}): {text[:40]!r}") from None


@dataclass(frozen=True)
class HostKeyCheck:
    """What to trust for one host. ``host`` is the inventory name, for messages."""

    host: str
    address: str
    port: int
    known_hosts: Path
    policy: HostKeyPolicy = HostKeyPolicy.STRICT
    pinned: str | None = None

    @property
    def name(self) -> str:
        return known_hosts_name(self.address, self.port)

    def _load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.known_hosts.exists():
            keys.load(str(self.known_hosts))
        return keys

    def preferred_key_types(self) -> list[str]:
        """Key types we already trust for this host, so the server is asked to present one of them."""
        if self.pinned:
            return [parse_pinned(self.pinned).get_name()]
        entry = self._load().lookup(self.name)
        return list(entry.keys()) if entry else []

    def verify(self, key: paramiko.PKey) -> None:
        """Return when ``key`` is trusted; raise HostKeyError otherwise (or record it: accept-new)."""
        presented = f"{key.get_name()} {fingerprint(key)}"
        if self.pinned:
            pinned = parse_pinned(self.pinned)
            if pinned.get_name() == key.get_name() and pinned.asbytes() == key.asbytes():
                return
            raise HostKeyError(
                self.host,
                f"host key mismatch for {self.name}: the inventory pins {pinned.get_name()} "
                f"{fingerprint(pinned)}, the host presented {presented}; refusing to connect",
                hint="if the host was really reinstalled, verify the new key out of band "
                "(ssh-keyscan, then ssh-keygen -lf) and update hostKey in the inventory",
            )
        entry = self._load().lookup(self.name)
        if entry:
            known = entry.get(key.get_name())
            if known is not None and known.asbytes() == key.asbytes():
                return
            old = known if known is not None else next(iter(entry.values()))
            raise HostKeyError(
                self.host,
                f"HOST KEY CHANGED for {self.name}: {self.known_hosts} has {old.get_name()} "
                f"{fingerprint(old)}, the host presented {presented}; refusing to connect "
                "(someone may be intercepting the connection)",
                hint=f"if the host was really reinstalled: ssh-keygen -f {self.known_hosts} -R "
                f"'{self.name}', then verify the new fingerprint and add it "
                f"(ssh-keyscan -p {self.port} {self.address} >> {self.known_hosts})",
            )
        if self.policy is HostKeyPolicy.ACCEPT_NEW:
            self._record(key)
            log.warning(
                "new host key for %s recorded in %s: %s", self.name, self.known_hosts, presented,
                extra={"host": self.host},
            )
            return
        raise HostKeyError(
            self.host,
            f"unknown host key for {self.name} ({presented}); refusing to connect",
            hint=f"verify the fingerprint out of band, then: ssh-keyscan -p {self.port} {self.address} "
            f">> {self.known_hosts} — or pin it as hostKey in the inventory, or set "
            "ssh.hostKeyPolicy: accept-new",
        )

    def _record(self, key: paramiko.PKey) -> None:
        with _KNOWN_HOSTS_LOCK:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            existing = self.known_hosts.read_bytes() if self.known_hosts.exists() else b""
            sep = b"" if not existing or existing.endswith(b"\n") else b"\n"
            with open(self.known_hosts, "ab") as f:
                f.write(sep + f"{self.name} {key.get_name()} {key.get_base64()}\n".encode())
