"""Talking to the lab's etcd from the runner, over the lab bridge, with the cluster's client
certificates: etcd's JSON gateway (``/v3/...``), which 3.4, 3.5 and 3.6 all serve on the client port.

Independent of kubeforge on purpose: the watcher and the writer must see the cluster as a client
does, whatever kubeforge believes about it.

- ``QuorumWatcher`` asks for a linearizable read every 100 ms (any member may answer; a linearizable
  read succeeds only while a leader with a quorum behind it exists) and records when it could not.
- ``Writer`` puts a fresh key every 100 ms and remembers every put etcd acknowledged.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

POLL_S = 0.1
# A leader election after a member restarts takes about a second with etcd's default election
# timeout (1000 ms); the etcd upgrade lab test allows 5 s of failed writes for it. No linearizable
# read from any member for longer than this is a lost quorum.
QUORUM_GAP_S = 5.0
PREFIX = "/kf/faults/writer/"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def prefix_end(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@dataclass(frozen=True)
class ClientCerts:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def fetch(cls, lab, member: str, into: Path) -> ClientCerts:
        """The CA and the health-check client pair, copied from a member (0600 in a 0700 dir)."""
        into.mkdir(parents=True, exist_ok=True, mode=0o700)
        into.chmod(0o700)
        paths = {}
        for name in ("ca.crt", "healthcheck-client.crt", "healthcheck-client.key"):
            res = lab.exec(member, ["cat", f"/etc/etcd/pki/{name}"])
            if res.returncode != 0:
                raise RuntimeError(f"{member}: cannot read /etc/etcd/pki/{name}: {res.stderr.strip()}")
            p = into / name
            p.touch(mode=0o600)
            p.write_text(res.stdout)
            paths[name] = p
        certs = cls(paths["ca.crt"], paths["healthcheck-client.crt"], paths["healthcheck-client.key"])
        try:
            certs.context()
        except (ssl.SSLError, ValueError) as e:  # e.g. a certificate and key written by different runs
            raise RuntimeError(f"{member}: the health-check client pair under /etc/etcd/pki is unusable: {e}") from None
        return certs

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.check_hostname = False  # members are addressed by IP; the chain is still verified
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


class Client:
    """One member's gateway; a dropped connection is opened again on the next call."""

    def __init__(self, address: str, certs: ClientCerts, timeout: float = 1.0) -> None:
        self.address, self.timeout = address, timeout
        self.ctx = certs.context()
        self.conn: http.client.HTTPSConnection | None = None

    def call(self, path: str, body: dict | None = None, method: str = "POST") -> dict:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.address, 2379, timeout=self.timeout, context=self.ctx)
        try:
            payload = json.dumps(body or {}) if method == "POST" else None
            self.conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.status != 200:
            raise OSError(f"{self.address}{path}: HTTP {resp.status} {data[:200]!r}")
        return json.loads(data or b"{}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # --- what the harness asks --------------------------------------------------------------
    def read_linearizable(self, key: str) -> None:
        self.call("/v3/kv/range", {"key": b64(key)})

    def put(self, key: str, value: str) -> None:
        self.call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def keys(self, prefix: str) -> set[str]:
        got = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "keys_only": True})
        return {unb64(kv["key"]) for kv in got.get("kvs", [])}

    def version(self) -> dict:
        return self.call("/version", method="GET")

    def members(self) -> list[str]:
        got = self.call("/v3/cluster/member/list", {})
        return sorted(m.get("name", "") for m in got.get("members", []))


class _Poller(threading.Thread):
    def __init__(self, addresses: list[str], certs: ClientCerts, timeout: float) -> None:
        super().__init__(daemon=True)
        self.addresses, self.timeout = list(addresses), timeout
        self.clients = [Client(a, certs, timeout) for a in addresses]
        self.stop_event = threading.Event()
        self.samples: list[tuple[float, bool]] = []

    def each_member(self, fn) -> bool:
        for c in self.clients:
            try:
                fn(c)
                return True
            except (OSError, ValueError, http.client.HTTPException):
                continue
        return False

    def also_with(self, certs: ClientCerts) -> None:
        """Every member tried with ``certs`` too, after the clients already there (e.g. a client of
        the new CA while a rotation runs: each refusal of the old one is a fast TLS error)."""
        self.clients += [Client(a, certs, self.timeout) for a in self.addresses]

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)
        for c in self.clients:
            c.close()


class QuorumWatcher(_Poller):
    """Every 100 ms: can any member serve a linearizable read? Gaps start counting at the first
    success (a cluster being installed from bare machines has no quorum to lose before it exists)."""

    def __init__(self, addresses: list[str], certs: ClientCerts) -> None:
        super().__init__(addresses, certs, timeout=1.0)

    def run(self) -> None:
        while not self.stop_event.is_set():
            start = time.monotonic()
            ok = self.each_member(lambda c: c.read_linearizable("/kf/faults/probe"))
            self.samples.append((start, ok))
            self.stop_event.wait(max(0.0, POLL_S - (time.monotonic() - start)))

    def gaps(self) -> list[float]:
        """Lengths of the stretches without a linearizable read, after the first success."""
        out, began, seen_ok = [], None, False
        for t, ok in self.samples:
            if ok:
                if began is not None:
                    out.append(t - began)
                began, seen_ok = None, True
            elif seen_ok and began is None:
                began = t
        if began is not None:
            out.append(self.samples[-1][0] - began)
        return out

    def losses(self) -> list[float]:
        return [g for g in self.gaps() if g > QUORUM_GAP_S]


class Writer(_Poller):
    """Every 100 ms a new key, tried on each member in turn until one acknowledges it."""

    def __init__(self, addresses: list[str], certs: ClientCerts, tag: str) -> None:
        super().__init__(addresses, certs, timeout=2.0)
        self.tag = tag
        self.acked: list[str] = []
        self.failed = 0

    def run(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            start = time.monotonic()
            key = f"{PREFIX}{self.tag}/{i:06d}"
            if self.each_member(lambda c: c.put(key, "x")):  # noqa: B023 - called within this iteration
                self.acked.append(key)
            else:
                self.failed += 1
            i += 1
            self.stop_event.wait(max(0.0, POLL_S - (time.monotonic() - start)))

    def lost(self, addresses: list[str], certs: ClientCerts) -> list[str] | None:
        """Acknowledged keys no member has now (None when no member answered the read)."""
        for a in addresses:
            c = Client(a, certs, timeout=5.0)
            try:
                present = c.keys(f"{PREFIX}{self.tag}/")
            except (OSError, ValueError, http.client.HTTPException):
                continue
            finally:
                c.close()
            return sorted(set(self.acked) - present)
        return None
