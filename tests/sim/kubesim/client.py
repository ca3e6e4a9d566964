"""HTTP client for the simulated API server (kubeconfigs say https://HOST:6443; the double speaks HTTP)."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

from .host import SimError


def api_port() -> int:
    return int(os.environ.get("KUBESIM_API_PORT", "6443"))


def base_url(server: str) -> str:
    url = re.sub(r"^https://", "http://", server.rstrip("/"))
    if not url.startswith("http://"):
        url = "http://" + url
    return re.sub(r":6443$", f":{api_port()}", url)


def request(bases: list[str], method: str, path: str, body=None, timeout: float = 10.0) -> tuple[int, object]:
    """(status, parsed JSON or text) from the first base that answers."""
    last: Exception | None = None
    for base in bases:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, _decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())
        except (urllib.error.URLError, OSError) as e:
            last = e
    host = bases[0].split("://", 1)[-1] if bases else "localhost:8080"
    raise SimError(f"The connection to the server {host} was refused - did you specify the right host or port?"
                   + (f" ({last})" if os.environ.get("KUBESIM_DEBUG") else ""), 503)


def _decode(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def op(bases: list[str], name: str, args: dict, timeout: float = 10.0):
    status, body = request(bases, "POST", "/kubesim/op", {"op": name, "args": args}, timeout)
    if status != 200:
        msg = body.get("error") if isinstance(body, dict) else str(body)
        raise SimError(msg or f"HTTP {status}", status)
    return body["result"]


def get(bases: list[str], path: str):
    status, body = request(bases, "GET", path)
    if status != 200:
        msg = body.get("error") if isinstance(body, dict) else str(body)
        raise SimError(msg or f"HTTP {status}", status)
    return body
