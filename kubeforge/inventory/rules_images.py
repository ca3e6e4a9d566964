"""Rules about spec.images: the repository kubeadm pulls from, registry mirrors, credentials, CA."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from kubeforge.inventory import paths
from kubeforge.inventory.context import Context
from kubeforge.inventory.paths import missing, path_problem

# host[:port]: lowercase DNS name, IPv4 or a bracketed IPv6, as image references write it
_REGISTRY = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*|\[[0-9a-f:]+\])(?::[0-9]{1,5})?$")
# a repository path component (distribution's reference grammar, lowercase)
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def registry_problem(text: str) -> str | None:
    if not _REGISTRY.match(text):
        return f"'{text}' is not a registry host (host or host:port, lowercase, no scheme or path)"
    port = text.rsplit(":", 1)[1] if ":" in text and not text.endswith("]") else None
    if port is not None and not 1 <= int(port) <= 65535:
        return f"'{text}': port {port} is out of range"
    return None


def check_images(ctx: Context) -> None:
    if not ctx.ok("images"):
        return
    images = ctx.spec.images
    base = ctx.spec_path("images")
    _check_repository(ctx, base + ("repository",), images.repository)
    endpoint_hosts: set[str] = set()
    for registry, urls in images.mirrors.items():
        if (problem := registry_problem(registry)) is not None:
            ctx.error(base + ("mirrors", registry), problem, at_key=True)
        if not urls:
            ctx.error(base + ("mirrors", registry), "lists no endpoints (write at least one https:// URL)")
        for j, url in enumerate(urls):
            u = urlparse(url)
            if u.scheme not in ("http", "https") or not u.netloc or u.query or u.fragment:
                ctx.error(base + ("mirrors", registry, j), f"'{url}' is not an http(s) URL of a registry endpoint")
            else:
                endpoint_hosts.add(u.netloc)
    known = {images.repository.split("/", 1)[0], *images.mirrors, *endpoint_hosts}
    for registry, cred in images.credentials.items():
        at = base + ("credentials", registry)
        if (problem := registry_problem(registry)) is not None:
            ctx.error(at, problem, at_key=True)
        elif registry not in known:
            ctx.warn(at, f"'{registry}' is neither the repository's registry nor a mirror or one of its endpoints: "
                     "the credentials are written but nothing kubeforge configures pulls from it", at_key=True)
        if not cred.username or ":" in cred.username:
            ctx.error(at + ("username",), "must be a non-empty name without ':' (basic auth)")
        if (cred.password_file is None) == (cred.password_env is None):
            ctx.error(at, "needs exactly one of passwordFile or passwordEnv (the password itself never goes in the inventory)")
        if cred.password_env is not None and not _ENV_NAME.match(cred.password_env):
            ctx.error(at + ("passwordEnv",), f"'{cred.password_env}' is not an environment variable name")
        if cred.password_file is not None:
            if (problem := path_problem(cred.password_file)) is not None:
                ctx.error(at + ("passwordFile",), f"'{cred.password_file}' {problem}")
            elif missing(ctx.base_dir, cred.password_file, paths.is_file):
                ctx.warn(at + ("passwordFile",), f"'{cred.password_file}' does not exist (yet)")
    if images.ca is not None and missing(ctx.base_dir, images.ca, paths.is_file):
        ctx.warn(base + ("ca",), f"'{images.ca}' does not exist (yet)")


def _check_repository(ctx: Context, at: tuple, text: str) -> None:
    if "://" in text:
        ctx.error(at, f"'{text}' has a scheme: write host[:port][/path] (kubeadm's imageRepository)")
        return
    registry, _, path = text.rstrip("/").partition("/")
    if (problem := registry_problem(registry)) is not None:
        ctx.error(at, problem)
        return
    bad = [p for p in path.split("/") if path and not _COMPONENT.match(p)]
    if bad:
        ctx.error(at, f"'{text}': '{bad[0]}' is not a repository path component (lowercase letters, digits, '.', '_', '-')")
