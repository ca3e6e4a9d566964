"""Registry credentials and CA, read on the operator's machine before anything is rendered.

The inventory names where a registry password is (a file or an environment variable), never the
password itself. It is read here, once, into a Secret (masked in logs and plan output); only the
rendered hosts.toml (a secret file, 0600 on the host) ever holds it, as a basic-auth header.
"""

from __future__ import annotations

import base64
import os

from kubeforge.errors import InputError
from kubeforge.model import Cluster, RegistryCredential, Secret
from kubeforge.model.images import RegistryAccess, needs_registry_access

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"


def _password(cluster: Cluster, cred: RegistryCredential) -> str:
    where = f"{cluster.source}: images.credentials.{cred.registry}"
    if cred.password_file is not None:
        try:
            text = cred.password_file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise InputError(f"{where}: cannot read passwordFile {cred.password_file}: {reason}") from None
        mode = cred.password_file.stat().st_mode & 0o077
        if mode:
            raise InputError(f"{where}: passwordFile {cred.password_file} is readable or writable by others "
                             f"(mode {cred.password_file.stat().st_mode & 0o777:03o})",
                             hint=f"chmod 600 {cred.password_file}")
        value: str | None = text.rstrip("\r\n")
    else:
        value = os.environ.get(cred.password_env or "")
        if value is None:
            raise InputError(f"{where}: the environment variable {cred.password_env} is not set",
                             hint=f"export {cred.password_env}=... (the registry password) before running kubeforge")
    if not value:
        raise InputError(f"{where}: the password ({cred.password_source}) is empty")
    Secret(value)  # registered: the log filter masks the bare password too, should it ever leak
    return value


def read_registry_access(cluster: Cluster) -> RegistryAccess | None:
    """Every configured registry's auth header and the CA; None when the inventory has neither.
    Raises InputError (exit 3) for an unreadable, empty or world-readable password file, an unset
    variable, or a CA that is not a PEM certificate — before any host is touched."""
    if not needs_registry_access(cluster):
        return None
    images = cluster.images
    auth = []
    for cred in images.credentials:
        token = base64.b64encode(f"{cred.username}:{_password(cluster, cred)}".encode()).decode()
        auth.append((cred.registry, Secret(f"Basic {token}")))
    ca = None
    if images.ca is not None:
        try:
            ca = images.ca.read_bytes()
        except OSError as exc:
            raise InputError(f"{cluster.source}: images.ca: cannot read {images.ca}: {exc.strerror}") from None
        if _PEM_CERT not in ca:
            raise InputError(f"{cluster.source}: images.ca: {images.ca} is not a PEM certificate")
    return RegistryAccess(auth=tuple(auth), ca_pem=ca)
