"""The v2-store check etcd asks for before 3.5 -> 3.6 (read-only; versions.yaml v2storeCheckBeforeExit).

etcd's 3.6 upgrade guide: if --enable-v2 (or ETCD_ENABLE_V2) was ever set, run `etcdutl check v2store`
and clean custom v2 data (--snapshot-count=1 workaround) before 3.6, which no longer reads it. On each
member this probe reports whether v2 is enabled now (the running etcd's argv and environment, and
kubeforge's etcd.env) and, where etcdutl exists, what `etcdutl check v2store` says about the data dir.
Where etcdutl does not exist (Debian's etcd-client before 3.5 has none), only the flag can be checked:
v2 data written while the flag was on in the past is invisible without etcdutl, and the plan says so.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from kubeforge.model import Cluster
from kubeforge.render.etcd import ENV_PATH
from kubeforge.transport.base import Command

_SCRIPT = r"""d={data_dir}
v2=no
pid=$(pgrep -x etcd | head -n1)
if [ -n "$pid" ]; then
  tr '\0' '\n' </proc/"$pid"/cmdline | grep -Eq '^--enable-v2(=true)?$' && v2=yes
  tr '\0' '\n' </proc/"$pid"/environ | grep -Eqi '^ETCD_ENABLE_V2=.?true' && v2=yes
fi
grep -Eqi '^ETCD_ENABLE_V2=.?true' {env} 2>/dev/null && v2=yes
echo "@@enable-v2 $v2"
u=$(command -v etcdutl || true)
[ -z "$u" ] && [ -x /usr/local/bin/etcdutl ] && u=/usr/local/bin/etcdutl
if [ -z "$u" ]; then echo "@@etcdutl none"; exit 0; fi
echo "@@etcdutl $u"
out=$("$u" check v2store --data-dir "$d" 2>&1); rc=$?
printf '%s\n' "$out" | tail -n 20
echo "@@rc $rc"
"""


@dataclass(frozen=True)
class V2StoreState:
    enabled_now: bool
    etcdutl: str | None  # its path; None when the member has no etcdutl
    clean: bool | None  # `etcdutl check v2store` passed; None when it could not run
    detail: str  # its output, for the refusal


def v2store_probe(cluster: Cluster) -> Command:
    script = _SCRIPT.format(data_dir=shlex.quote(cluster.etcd.data_dir), env=shlex.quote(ENV_PATH))
    return Command(script=script, sudo=True, timeout=120, check=False,
                   description="etcd v2 store: --enable-v2 and `etcdutl check v2store` (read-only)")


def parse_v2store(text: str) -> V2StoreState:
    enabled, etcdutl, rc, lines = False, None, None, []
    for line in text.splitlines():
        if line.startswith("@@enable-v2 "):
            enabled = line.split()[1] == "yes"
        elif line.startswith("@@etcdutl "):
            path = line.split(maxsplit=1)[1]
            etcdutl = None if path == "none" else path
        elif line.startswith("@@rc "):
            rc = int(line.split()[1])
        elif line.strip():
            lines.append(line.strip())
    clean = None if etcdutl is None or rc is None else rc == 0
    return V2StoreState(enabled, etcdutl, clean, " / ".join(lines)[-400:])


def read_v2store(cluster: Cluster, pool):
    """The v2-store probe on every member, in parallel: a FanoutResult of V2StoreState per member."""
    probe = v2store_probe(cluster)
    return pool.fanout(cluster.etcd_members, lambda t: parse_v2store(t.run(probe).stdout))
