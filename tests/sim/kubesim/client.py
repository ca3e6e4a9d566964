"""HTTPS client for the simulated API server: the kubeconfig's CA verifies the server, its client
certificate says who is asking (kubesim/tls.py)."""

from __future__ import annotations

import json
import os
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

from . import tls, yamlish
from .host import SimError


def api_port() -> int:
    return int(os.environ.get("KUBESIM_API_PORT", "6443"))


class Base(str):
    """An API server URL with the TLS context (and bearer token) to reach it with."""

    tls: ssl.SSLContext | None = None
    token: str | None = None


def _url(server: str) -> str:
    url = re.sub(r"^https?://", "", server.rstrip("/"))
    return re.sub(r":6443$", f":{api_port()}", "https://" + url)


def base_url(server: str, ctx: ssl.SSLContext | None = None, token: str | None = None) -> Base:
    """``server`` over TLS; without a context, anonymous and unverified (a health probe)."""
    b = Base(_url(server))
    b.tls, b.token = ctx or tls.anonymous_context(), token
    return b


def with_server(like: Base, server: str) -> Base:
    """Another server reached with the same credentials (a control plane's own API server)."""
    return base_url(server, like.tls, like.token)


def local(like: Base) -> Base:
    return with_server(like, f"https://127.0.0.1:{api_port()}")


def local_probe() -> Base:
    """This machine's own API server, anonymous (health and version)."""
    return base_url(f"127.0.0.1:{api_port()}")


def from_kubeconfig(path: str, server: str | None = None) -> Base:
    """The kubeconfig at ``path`` (a full path) with its credentials; ``server`` overrides its server."""
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yamlish.load(f.read()) or {}
    except OSError as e:
        raise SimError(f"stat {path}: {e.strerror.lower() if e.strerror else e}") from None
    clusters = cfg.get("clusters") or [{}]
    url = server or (clusters[0].get("cluster") or {}).get("server")
    if not url:
        raise SimError(f"invalid configuration: no server found in {path}")
    ctx, token = tls.client_context(cfg, os.path.dirname(path))
    return base_url(url, ctx, token)


def request(bases: list[str], method: str, path: str, body=None, timeout: float = 10.0) -> tuple[int, object]:
    """(status, parsed JSON or text) from the first base that answers."""
    last: Exception | None = None
    refusal: str | None = None
    for base in bases:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if getattr(base, "token", None):
            headers["Authorization"] = f"Bearer {base.token}"
        req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        ctx = getattr(base, "tls", None) or tls.anonymous_context()
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
                return r.status, _decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, ssl.SSLCertVerificationError):
                # kubectl's words when the kubeconfig's CA does not vouch for the server
                refusal = f"Unable to connect to the server: tls: failed to verify certificate: {_x509(reason)}"
            elif isinstance(reason, ssl.SSLError) and "alert" in str(reason):
                # the server refused our client certificate in the handshake (untrusted issuer)
                return 401, {"error": "Unauthorized"}
            last = e
    if refusal is not None:
        raise SimError(refusal, 503)
    host_ = bases[0].split("://", 1)[-1] if bases else "localhost:8080"
    reason = getattr(last, "reason", last)
    if isinstance(reason, TimeoutError):  # kubectl's words when the dial or the answer times out
        raise SimError(f"Unable to connect to the server: dial tcp {host_}: i/o timeout", 503)
    raise SimError(f"The connection to the server {host_} was refused - did you specify the right host or port?"
                   + (f" ({last})" if os.environ.get("KUBESIM_DEBUG") else ""), 503)


def _x509(e: ssl.SSLCertVerificationError) -> str:
    if "Hostname mismatch" in str(e) or "IP address mismatch" in str(e):
        return f"x509: certificate is valid for other names, not this one ({e.verify_message})"
    if "expired" in str(e.verify_message):
        return "x509: certificate has expired or is not yet valid"
    return "x509: certificate signed by unknown authority"


def _decode(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _fail(status: int, body) -> SimError:
    msg = body.get("error") if isinstance(body, dict) else str(body)
    if status == 401 and msg == "Unauthorized":  # authentication failed (not an operation's own 401)
        return SimError(tls.UNAUTHORIZED, 401)
    if status == 403:
        return SimError(f"Error from server (Forbidden): {msg}", 403)
    return SimError(msg or f"HTTP {status}", status)


def op(bases: list[str], name: str, args: dict, timeout: float = 10.0):
    status, body = request(bases, "POST", "/kubesim/op", {"op": name, "args": args}, timeout)
    if status != 200:
        raise _fail(status, body)
    return body["result"]


def get(bases: list[str], path: str, access: dict | None = None):
    """GET ``path``; ``access`` names what a read of the state stands for (verb, resource, group,
    namespace), which the API server authorises."""
    if access:
        path += "?" + urllib.parse.urlencode(access)
    status, body = request(bases, "GET", path)
    if status != 200:
        raise _fail(status, body)
    return body
