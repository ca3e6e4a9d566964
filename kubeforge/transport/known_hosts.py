"""known_hosts read as OpenSSH reads it (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT").

A line is ``[marker] patterns keytype base64 [comment]``: ``marker`` is ``@cert-authority`` or
``@revoked``; ``patterns`` is a comma-separated list of names, ``[name]:port``, hashed names
(``|1|salt|hash``), wildcards (``*``, ``?``) and negations (``!pattern``). Every key a host has is
kept, whatever its type. A line that cannot be read is skipped with one warning naming file:line,
as ssh does; it never makes the whole file unusable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

log = logging.getLogger("kubeforge.transport")

CERT_AUTHORITY = "@cert-authority"
REVOKED = "@revoked"
# OpenSSH refuses lines longer than this too; a huge line is garbage, not a key.
MAX_LINE = 16 << 10
MAX_FILE = 64 << 20

_warned: set[tuple[str, int]] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class KnownKey:
    marker: str | None  # None, CERT_AUTHORITY or REVOKED
    patterns: str
    key: paramiko.PKey
    origin: str  # "path:line"

    @property
    def blob(self) -> bytes:
        return self.key.asbytes()


def _warn_once(origin: str, line: int, why: str) -> None:
    with _warned_lock:
        if (origin, line) in _warned:
            return
        _warned.add((origin, line))
    log.warning("%s:%d: line skipped: %s", origin, line, why, extra={"host": "-"})


def _glob(pattern: str) -> re.Pattern[str]:
    # only * and ? are special in known_hosts; brackets belong to "[host]:port"
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body + r"\Z", re.IGNORECASE)


def _hashed_matches(entry: str, name: str) -> bool:
    parts = entry.split("|")
    if len(parts) != 4 or parts[1] != "1":
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        want = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    got = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(got, want)


def patterns_match(patterns: str, name: str) -> bool:
    """OpenSSH's match_hostname: a negated match wins over any positive one."""
    if patterns.startswith("|"):
        return _hashed_matches(patterns, name)
    matched = False
    for raw in patterns.split(","):
        negate = raw.startswith("!")
        pat = raw[1:] if negate else raw
        if not pat:
            continue
        if _glob(pat).match(name):
            if negate:
                return False
            matched = True
    return matched


def _decode_key(keytype: str, data: str) -> paramiko.PKey:
    blob = base64.b64decode(data, validate=True)
    return paramiko.PKey.from_type_string(keytype, blob)


def parse(text: str, origin: str) -> list[KnownKey]:
    """Every readable line of a known_hosts file; unreadable ones warn once and are skipped."""
    out: list[KnownKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(stripped) > MAX_LINE:
            _warn_once(origin, number, f"longer than {MAX_LINE} characters")
            continue
        fields = stripped.split()
        marker = None
        if fields[0].startswith("@"):
            marker = fields.pop(0)
            if marker not in (CERT_AUTHORITY, REVOKED):
                _warn_once(origin, number, f"unknown marker {marker[:40]!r}")
                continue
        if len(fields) < 3:
            _warn_once(origin, number, "expected host patterns, a key type and a base64 key")
            continue
        patterns, keytype, data = fields[0], fields[1], fields[2]
        try:
            key = _decode_key(keytype, data)
        except Exception as exc:  # noqa: BLE001 - paramiko raises several types for bad keys
            _warn_once(origin, number, f"not a readable {keytype[:40]} key ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        out.append(KnownKey(marker, patterns, key, f"{origin}:{number}"))
    return out


def load(path: Path) -> list[KnownKey]:
    """The file's keys; an absent file has none. Reads at most MAX_FILE bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc.strerror or exc, extra={"host": "-"})
        return []
    if len(raw) > MAX_FILE:
        log.warning("%s: larger than %d bytes; only the start is read", path, MAX_FILE, extra={"host": "-"})
        raw = raw[:MAX_FILE]
    return parse(raw.decode("utf-8", errors="replace"), str(path))


@dataclass(frozen=True)
class HostEntries:
    """What known_hosts says about one host name."""

    keys: tuple[KnownKey, ...]  # plain keys trusted for the host
    authorities: tuple[KnownKey, ...]  # @cert-authority keys for the host
    revoked: tuple[KnownKey, ...]  # @revoked keys (host patterns matched, as OpenSSH does)

    def is_revoked(self, key: paramiko.PKey) -> KnownKey | None:
        blob = key.asbytes()
        return next((r for r in self.revoked if r.blob == blob), None)


def for_host(entries: list[KnownKey], name: str) -> HostEntries:
    """The entries whose patterns match ``name`` (``host`` or ``[host]:port``)."""
    keys: list[KnownKey] = []
    cas: list[KnownKey] = []
    revoked: list[KnownKey] = []
    for e in entries:
        if not patterns_match(e.patterns, name):
            continue
        {None: keys, CERT_AUTHORITY: cas, REVOKED: revoked}[e.marker].append(e)
    return HostEntries(tuple(keys), tuple(cas), tuple(revoked))


def forget_host(path: Path, name: str) -> list[str]:
    """Remove the plain keys known_hosts trusts for exactly ``name`` (as ``ssh-keygen -R`` does: a
    hashed or literal entry naming it; wildcard lines, @cert-authority and @revoked lines are kept),
    for a machine that was replaced and has a new host key. The file is rewritten atomically, with
    its mode kept; the lines removed are returned ("path:line"), nothing is written when none match."""
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return []
    kept, removed = [], []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        fields = line.split()
        if (fields and not fields[0].startswith(("@", "#")) and len(fields) >= 3
                and not any(c in fields[0] for c in "*?!") and patterns_match(fields[0], name)):
            removed.append(f"{path}:{number}")
            continue
        kept.append(line)
    if removed:
        tmp = path.with_name(path.name + ".kubeforge-tmp")
        tmp.write_text("".join(kept), encoding="utf-8", errors="surrogateescape")
        tmp.chmod(path.stat().st_mode & 0o7777)
        tmp.replace(path)
    return removed
