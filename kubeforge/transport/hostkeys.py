"""Host key verification: known_hosts as OpenSSH reads it (every key type, hashed names,
``[host]:port``, ``@cert-authority`` and ``@revoked``) or a key pinned in the inventory. Unknown keys
are refused unless the policy is accept-new; changed and revoked keys always are.

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
from kubeforge.transport import known_hosts as kh_file
from kubeforge.transport.hostcert import CERT_SUFFIX, CertificateError, certificate_of, check_host_certificate, parse_certificate

log = logging.getLogger("kubeforge.transport")

# accept-new appends from many threads at once; one writer at a time keeps lines whole.
_KNOWN_HOSTS_LOCK = threading.Lock()


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's form: ``SHA256:<base64 without padding>``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


# Host key algorithms whose certificate variants paramiko understands, best first.
CERT_ALGORITHMS = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                   "rsa-sha2-512", "rsa-sha2-256")


def algorithms_for(key_type: str) -> list[str]:
    """Host key algorithms that present a key of ``key_type`` (an RSA key has three)."""
    if key_type == "ssh-rsa":
        return ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
    return [key_type]


def _short(key: paramiko.PKey) -> str:
    """The key file name's part for a key type: ssh_host_<ed25519|ecdsa|rsa>_key."""
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa") else name.removeprefix("ssh-")


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

    def _entries(self) -> kh_file.HostEntries:
        return kh_file.for_host(kh_file.load(self.known_hosts), self.name)

    def preferred_key_types(self) -> list[str]:
        """Host key algorithms to ask the server for, best first: certificates when a CA is listed
        for this host, then the types known_hosts (or the pin) holds for it, as ssh orders them.
        An RSA key is asked for by its SHA-2 algorithms (OpenSSH 8.8+ no longer offers ssh-rsa)."""
        if self.pinned:
            return algorithms_for(parse_pinned(self.pinned).get_name())
        entries = self._entries()
        out: list[str] = []
        if entries.authorities:
            out += [a + CERT_SUFFIX for a in CERT_ALGORITHMS]
        for k in entries.keys:
            out += [a for a in algorithms_for(k.key.get_name()) if a not in out]
        return out

    def verify(self, key: paramiko.PKey) -> None:
        """Return when ``key`` is trusted; raise HostKeyError otherwise (or record it: accept-new)."""
        presented = f"{key.get_name()} {fingerprint(key)}"
        if self.pinned:
            self._verify_pinned(key, presented)
            return
        entries = self._entries()
        cert_blob = certificate_of(key)
        revoked = entries.is_revoked(key)
        if revoked is not None:
            raise HostKeyError(
                self.host,
                f"host key {presented} of {self.name} is marked @revoked in {revoked.origin}; refusing to connect",
                hint="the key was revoked on purpose: ask whoever manages the host for its new key",
            )
        if cert_blob is not None and entries.authorities:
            problem = self._check_certificate(cert_blob, entries)
            if problem is None:
                return
            # as ssh: a certificate that fails falls back to the plain key, when that is known
            if any(k.blob == key.asbytes() for k in entries.keys):
                log.warning("%s: %s; the plain key is in known_hosts, accepted", self.name, problem,
                            extra={"host": self.host})
                return
            raise HostKeyError(self.host, f"host certificate of {self.name} refused: {problem}",
                               hint="check the certificate on the host (ssh-keygen -L -f <host cert>) and the "
                               f"@cert-authority line in {self.known_hosts}")
        if entries.keys:
            if any(k.blob == key.asbytes() for k in entries.keys):
                return
            same_type = [k for k in entries.keys if k.key.get_name() == key.get_name()]
            old = (same_type or list(entries.keys))[0]
            raise HostKeyError(
                self.host,
                f"HOST KEY CHANGED for {self.name}: {old.origin} has {old.key.get_name()} "
                f"{fingerprint(old.key)}, the host presented {presented}; refusing to connect "
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
        # the way forward goes in the message itself: reports that show one line per host show it
        raise HostKeyError(
            self.host,
            f"unknown host key for {self.name}: {presented}; refusing to connect. Compare that fingerprint "
            f"with the host's own (ssh-keygen -lf /etc/ssh/ssh_host_{_short(key)}_key.pub on its console), then "
            f"add it (ssh-keyscan -p {self.port} {self.address} >> {self.known_hosts}), or pin it on the host "
            f"in the inventory (hostKey: \"{key.get_name()} {key.get_base64()}\"), or set "
            "ssh: {hostKeyPolicy: accept-new}",
        )

    def _verify_pinned(self, key: paramiko.PKey, presented: str) -> None:
        assert self.pinned is not None
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

    def _check_certificate(self, blob: bytes, entries: kh_file.HostEntries) -> str | None:
        """None when the certificate is good for this host, else why not."""
        try:
            cert = parse_certificate(blob)
            if any(r.blob == cert.ca_blob for r in entries.revoked):
                return "its CA key is marked @revoked"
            check_host_certificate(cert, self.address, [a.blob for a in entries.authorities])
        except CertificateError as exc:
            return str(exc)
        return None

    def _record(self, key: paramiko.PKey) -> None:
        with _KNOWN_HOSTS_LOCK:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            existing = self.known_hosts.read_bytes() if self.known_hosts.exists() else b""
            sep = b"" if not existing or existing.endswith(b"\n") else b"\n"
            with open(self.known_hosts, "ab") as f:
                f.write(sep + f"{self.name} {key.get_name()} {key.get_base64()}\n".encode())
