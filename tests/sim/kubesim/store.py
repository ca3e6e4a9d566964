"""Where the simulated API objects live: a JSON file (stacked etcd) or the real etcd (external etcd).

Both give ``read()`` and ``transact(fn)``: fn gets a fresh copy of the state, mutates it, and the write
only lands if nobody else wrote in between (a file lock; an etcd compare-and-swap on mod_revision).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import ssl
import tempfile
import threading
import urllib.error
import urllib.request

from . import state as rules
from .host import SimError

STATE_KEY = "/registry/kubesim/state"
COMPACT_EVERY = 200


class FileStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return rules.new_state()

    def transact(self, fn):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with self._lock, open(self.path + ".lock", "a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            st = self.read()
            before = json.dumps(st, sort_keys=True)
            result = fn(st)
            if json.dumps(st, sort_keys=True) == before:
                return result
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path))
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(st, f)
            os.replace(tmp, self.path)
            return result


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class EtcdStore:
    """The state as one key in the real etcd cluster, through etcd's v3 JSON gateway over mutual TLS."""

    def __init__(self, endpoints: list[str], cafile: str | None = None, certfile: str | None = None,
                 keyfile: str | None = None) -> None:
        self.endpoints = endpoints
        self.ctx = None
        if any(e.startswith("https://") for e in endpoints):
            self.ctx = ssl.create_default_context(cafile=cafile)
            if certfile:
                self.ctx.load_cert_chain(certfile, keyfile)
        self._lock = threading.Lock()
        self._writes = 0

    def _post(self, path: str, body: dict) -> dict:
        last: Exception | None = None
        for ep in self.endpoints:
            req = urllib.request.Request(ep.rstrip("/") + path, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, context=self.ctx, timeout=5) as r:
                    return json.loads(r.read() or b"{}")
            except urllib.error.HTTPError as e:
                raise SimError(f"etcd at {ep} refused {path}: {e.read().decode(errors='replace')[:300]}", 500) from None
            except (urllib.error.URLError, OSError) as e:
                last = e
        raise SimError(f"etcd unreachable at {', '.join(self.endpoints)}: {last}", 503)

    def _range(self) -> tuple[dict, int]:
        out = self._post("/v3/kv/range", {"key": _b64(STATE_KEY)})
        kvs = out.get("kvs") or []
        if not kvs:
            return rules.new_state(), 0
        return json.loads(base64.b64decode(kvs[0]["value"])), int(kvs[0].get("mod_revision", 0))

    def read(self) -> dict:
        return self._range()[0]

    def healthy(self) -> bool:
        try:
            self._range()
            return True
        except SimError:
            return False

    def transact(self, fn):
        # An operation that changes nothing (most heartbeats: a node's is stored at most every
        # KUBESIM_HEARTBEAT_WRITE_SECONDS) is answered from one read, without queueing behind this API
        # server's writes: at 100 nodes the writes, one etcd commit each, queued every request past the
        # clients' 10 s timeout (docs/fleet.md, run 3). The real API server has no such queue: a request
        # that writes nothing waits for no other. Writers stay serialised below; etcd's compare-and-swap
        # on mod_revision keeps them apart across API servers. fn is a pure function of the state, so
        # running it again on a fresh read is safe.
        st, rev = self._range()
        before = json.dumps(st, sort_keys=True)
        result = fn(st)
        if rev and json.dumps(st, sort_keys=True) == before:
            return result  # nothing changed: no new revision, no growth of the etcd database
        with self._lock:
            for _ in range(100):
                st, rev = self._range()
                before = json.dumps(st, sort_keys=True)
                result = fn(st)
                if rev and json.dumps(st, sort_keys=True) == before:
                    return result
                cmp = ({"target": "MOD", "key": _b64(STATE_KEY), "mod_revision": str(rev), "result": "EQUAL"} if rev
                       else {"target": "CREATE", "key": _b64(STATE_KEY), "create_revision": "0", "result": "EQUAL"})
                out = self._post("/v3/kv/txn", {"compare": [cmp], "success": [
                    {"request_put": {"key": _b64(STATE_KEY), "value": _b64(json.dumps(st))}}]})
                if out.get("succeeded"):
                    self._writes += 1
                    if self._writes % COMPACT_EVERY == 0:
                        # like kube-apiserver's periodic compaction: keep etcd's history from growing without bound
                        self._post("/v3/kv/compaction", {"revision": str(int(out["header"]["revision"]) - 1)})
                    return result
            raise SimError("too much contention writing the cluster state to etcd", 503)
