"""The simulated kube-apiserver: JSON over HTTPS, one serialised write path into a store.

Every request is authenticated (a client certificate from the cluster CA, else anonymous) and
authorised (rbac.py) before it is served; plain HTTP gets Go's answer on a TLS port."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import client, rbac, tls
from . import state as rules
from .host import SimError, parse_version
from .rbac import plural

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
    """A secondary control plane with stacked etcd: its API server forwards to the first one's state,
    authenticated with this control plane's admin.conf (``kubeconfig``, a full path)."""

    def __init__(self, upstream: str, kubeconfig: str) -> None:
        self.upstream, self.kubeconfig = upstream, kubeconfig
        self._bases: list[str] | None = None

    @property
    def bases(self) -> list[str]:
        if self._bases is None:
            self._bases = [client.from_kubeconfig(self.kubeconfig, server=self.upstream)]
        return self._bases

    def op(self, name: str, args: dict) -> tuple[int, dict]:
        status, body = client.request(self.bases, "POST", "/kubesim/op", {"op": name, "args": args})
        return status, body if isinstance(body, dict) else {"error": str(body)}

    def view(self) -> dict:
        return client.get(self.bases, "/kubesim/state")


PUBLIC = {"/livez", "/healthz", "/readyz", "/version"}  # system:public-info-viewer, anonymous included
# What each operation is, for RBAC: (verb, API group, resource, namespace). None: open to anyone
# (join discovery reads the public cluster-info; a join authenticates with its bootstrap token).
OP_ACCESS: dict[str, tuple[str, str, str, str] | None] = {
    "discover": None, "join": None,
    "heartbeat": ("update", "", "nodes/status", ""), "kubelet_started": ("update", "", "nodes/status", ""),
    "init": ("create", "", "nodes", ""),
    "token_create": ("create", "", "secrets", "kube-system"), "upload_certs": ("create", "", "secrets", "kube-system"),
    "upgrade_plan": ("get", "", "configmaps", "kube-system"), "upgrade_apply": ("update", "", "configmaps", "kube-system"),
    "upgrade_node": ("get", "", "configmaps", "kube-system"), "reset": ("get", "", "nodes", ""),
    "mark_control_plane": ("patch", "", "nodes", ""),
    "cordon": ("patch", "", "nodes", ""), "label": ("patch", "", "nodes", ""), "taint": ("patch", "", "nodes", ""),
    "delete_node": ("delete", "", "nodes", ""),
}


def _object_access(raw: dict) -> tuple[str, str, str, str]:
    from . import apis

    av = str(raw.get("apiVersion") or "v1")
    kind = str(raw.get("kind") or "")
    ns = "" if kind in apis.CLUSTER_SCOPED else ((raw.get("metadata") or {}).get("namespace") or "default")
    return "patch", av.rpartition("/")[0], plural(kind), ns


def accesses(name: str, args: dict) -> list[tuple[str, str, str, str]]:
    if name == "apply":
        return [_object_access(o) for o in args.get("objects") or [] if isinstance(o, dict)]
    if name == "evict":
        return [("create", "", "pods/eviction", args.get("namespace") or "default")]
    access = OP_ACCESS.get(name, ("*", "*", "*", ""))
    return [access] if access is not None else []


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

    def _who(self) -> tuple[str, tuple[str, ...]] | None:
        if self.headers.get("Authorization"):
            return None  # no token authenticator is configured: an unknown bearer token is Unauthorized
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        front_proxy = self.server.api.request_header  # type: ignore[attr-defined]
        if peer and front_proxy is not None and front_proxy.issued(peer):
            return front_proxy.identity(peer, self.headers, time.time())
        return tls.identity(peer, time.time())

    def _authorised(self, wanted: list[tuple[str, str, str, str]], node: str | None = None) -> bool:
        """Authenticate and authorise; on refusal the 401/403 answer is sent already."""
        who = self._who()
        if who is None:
            self._send(401, {"error": "Unauthorized"})
            return False
        user, groups = who
        if node is not None and "system:nodes" in groups and user != f"system:node:{node}":
            # the Node authoriser: a kubelet writes only its own Node
            self._send(403, {"error": rbac.forbidden(user, "update", "", "nodes/status") + f': node "{user[12:]}" '
                                      f'is not allowed to modify node "{node}"'})
            return False
        state: dict = {}
        for access in wanted:
            if rbac.allowed(state, user, groups, *access):
                continue
            if not state:  # the built-in grants did not do: read the applied roles and bindings
                state = self.server.api.backend.view()  # type: ignore[attr-defined]
                if rbac.allowed(state, user, groups, *access):
                    continue
            self._send(403, {"error": rbac.forbidden(user, *access)})
            return False
        return True

    def do_GET(self) -> None:
        api = self.server.api  # type: ignore[attr-defined]
        p, _, query = self.path.partition("?")
        if p not in PUBLIC:
            q = dict(urllib.parse.parse_qsl(query))
            wanted = (q.get("verb", "get"), q.get("group", ""), q.get("resource", "nodes"), q.get("namespace", ""))
            if not self._authorised([wanted]):
                return
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
            node = args.get("node") if body["op"] in ("heartbeat", "kubelet_started") else None
            if not self._authorised(accesses(body["op"], args), node):
                return
            if body["op"] == "apply":
                args.setdefault("serverVersion", api.version)  # a proxying API server's version wins
            csr = args.pop("csr", None) if body["op"] == "join" else None
            status, out = api.backend.op(body["op"], args)
            if status == 200 and csr:
                # the joining kubelet's client certificate, as the CSR signer issues it
                out["result"]["certificate"] = tls.sign(csr.encode(), time.time() + tls.CERTIFICATE_VALIDITY,
                                                        *api.client_ca_pair).decode()
        except SimError as e:
            status, out = e.code, {"error": e.message}
        except (ValueError, KeyError) as e:
            status, out = 400, {"error": f"bad request: {e}"}
        self._send(status, out)


def listen_backlog() -> int:
    """The backlog Go's net.Listen uses (kube-apiserver's secure port): the kernel's somaxconn.
    socketserver's default of 5 would drop the SYNs of a few dozen kubelets connecting at once, a
    failure the real API server does not have."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(int(f.read().strip()), 128)
    except (OSError, ValueError):
        return 4096


class _TlsServer(ThreadingHTTPServer):
    """TLS only, as kube-apiserver's secure port: plain HTTP gets Go's own answer and is closed (the
    first byte of a TLS connection is 0x16, a handshake)."""

    daemon_threads = True
    ssl_ctx: ssl.SSLContext | None = None
    request_queue_size = listen_backlog()

    def finish_request(self, request, client_address) -> None:
        try:
            request.settimeout(10)
            first = request.recv(1, socket.MSG_PEEK)
            if first != b"\x16" or self.ssl_ctx is None:
                request.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                return
            request = self.ssl_ctx.wrap_socket(request, server_side=True)
            request.settimeout(None)
        except (OSError, ssl.SSLError):
            return  # a refused client certificate ends here, in the handshake
        super().finish_request(request, client_address)


class ApiServer:
    def __init__(self, backend, version: str, addresses: list[str], port: int | None = None,
                 ssl_ctx: ssl.SSLContext | None = None, client_ca_pair: tuple[str, str] | None = None,
                 request_header: tls.RequestHeader | None = None) -> None:
        self.backend = backend
        self.version = version
        self.request_header = request_header  # the front proxy's trust (--requestheader-*), if configured
        self.client_ca_pair = client_ca_pair  # (ca.crt, ca.key) full paths: signs joining kubelets' CSRs
        self.servers = []
        for addr in dict.fromkeys(addresses):
            srv = _TlsServer((addr, client.api_port() if port is None else port), _Handler)
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
