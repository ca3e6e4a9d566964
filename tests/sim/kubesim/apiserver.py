"""The simulated kube-apiserver: JSON over HTTP, one serialised write path into a store."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import client
from . import state as rules
from .host import SimError, parse_version

READ_ONLY = {"discover", "upgrade_plan"}


class LocalBackend:
    def __init__(self, store, clock=time.time) -> None:
        self.store = store
        self.clock = clock

    def op(self, name: str, args: dict) -> tuple[int, dict]:
        fn = rules.OPS.get(name)
        if fn is None:
            return 404, {"error": f"unknown operation {name}"}
        real = self.clock()  # the cluster's time: this plus the state's test-clock offset (rules.cluster_time)
        try:
            if name in READ_ONLY:
                st = self.store.read()
                result = fn(st, args, rules.cluster_time(st, real))
            else:
                result = self.store.transact(lambda st: fn(st, args, rules.cluster_time(st, real)))
        except SimError as e:
            if getattr(e, "record", False):
                node = args.get("node", {}).get("name") if isinstance(args.get("node"), dict) else args.get("node")
                message = e.message
                self.store.transact(lambda st: rules.violation(st, rules.cluster_time(st, real), node, message))
            return e.code, {"error": e.message}
        return 200, {"result": result}

    def view(self) -> dict:
        st = self.store.read()
        return rules.view(st, rules.cluster_time(st, self.clock()))

    def healthy(self) -> bool:
        check = getattr(self.store, "healthy", None)
        return check() if check is not None else True


class ProxyBackend:
    """A secondary control plane with stacked etcd: its API server forwards to the first one's state."""

    def __init__(self, upstream: str) -> None:
        self.bases = [client.base_url(upstream)]

    def op(self, name: str, args: dict) -> tuple[int, dict]:
        status, body = client.request(self.bases, "POST", "/kubesim/op", {"op": name, "args": args})
        return status, body if isinstance(body, dict) else {"error": str(body)}

    def view(self) -> dict:
        return client.get(self.bases, "/kubesim/state")


class _Handler(BaseHTTPRequestHandler):
    server_version = "kubesim"

    def log_message(self, fmt, *args) -> None:  # quiet: the kubelet's journal is not an access log
        pass

    def _send(self, status: int, body) -> None:
        raw = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        api = self.server.api  # type: ignore[attr-defined]
        p = self.path.split("?")[0]
        try:
            if p == "/livez":
                return self._send(200, "ok")
            if p in ("/healthz", "/readyz"):
                # like kube-apiserver's etcd check: not healthy while its store cannot be read
                healthy = getattr(api.backend, "healthy", None)
                if healthy is not None and not healthy():
                    return self._send(500, "[-]etcd failed: reason withheld\nhealthz check failed")
                return self._send(200, "ok")
            if p == "/version":
                major, minor, _ = parse_version(api.version)
                return self._send(200, {"major": str(major), "minor": str(minor), "gitVersion": api.version,
                                        "platform": "linux/amd64", "goVersion": "kubesim"})
            if p == "/kubesim/state":
                # with the answering API server's own version: what it serves depends on it
                return self._send(200, {**api.backend.view(), "serverVersion": api.version})
            if p == "/kubesim/violations":
                return self._send(200, api.backend.view()["violations"])
        except SimError as e:
            return self._send(e.code, {"error": e.message})
        self._send(404, {"error": f"the server could not find the requested resource ({p})"})

    def do_POST(self) -> None:
        api = self.server.api  # type: ignore[attr-defined]
        if self.path != "/kubesim/op":
            return self._send(404, {"error": "not found"})
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            args = body.get("args") or {}
            if body["op"] == "apply":
                args.setdefault("serverVersion", api.version)  # a proxying API server's version wins
            status, out = api.backend.op(body["op"], args)
        except SimError as e:
            status, out = e.code, {"error": e.message}
        except (ValueError, KeyError) as e:
            status, out = 400, {"error": f"bad request: {e}"}
        self._send(status, out)


class _DualServer(ThreadingHTTPServer):
    """Plain HTTP and TLS on one port: health checks (haproxy `check-ssl`) and https clients speak TLS,
    the simulator's own clients plain HTTP. The first byte of a TLS connection is 0x16 (handshake)."""

    daemon_threads = True
    ssl_ctx: ssl.SSLContext | None = None

    def finish_request(self, request, client_address) -> None:
        if self.ssl_ctx is not None:
            try:
                request.settimeout(10)
                first = request.recv(1, socket.MSG_PEEK)
                if first == b"\x16":
                    request = self.ssl_ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (OSError, ssl.SSLError):
                return
        super().finish_request(request, client_address)


class ApiServer:
    def __init__(self, backend, version: str, addresses: list[str], port: int | None = None,
                 ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.backend = backend
        self.version = version
        self.servers = []
        for addr in dict.fromkeys(addresses):
            srv = _DualServer((addr, client.api_port() if port is None else port), _Handler)
            srv.ssl_ctx = ssl_ctx
            srv.daemon_threads = True
            srv.api = self  # type: ignore[attr-defined]
            self.servers.append(srv)
        for srv in self.servers:
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def port(self) -> int:
        return self.servers[0].server_address[1]

    def stop(self) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
