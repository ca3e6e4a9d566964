"""``kubeforge kubeconfig``: the admin kubeconfig (or one for a named user with an expiry) from the first
control plane to the operator's machine, 0600 in a 0700 directory.

No lock is taken: nothing on a host changes but a scratch directory under /run that the plan removes.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from kubeforge.errors import InputError, UsageError
from kubeforge.model import Cluster

if TYPE_CHECKING:
    from kubeforge.execute.report import Report

ADMIN_LOCAL = "admin.conf"
USERS_DIR = "users"
_PART = re.compile(r"(\d+)([dhms])")
MAX_SECONDS = 10 * 365 * 86400


@dataclass(frozen=True)
class KubeconfigResult:
    path: Path
    user: str
    server: str | None
    expires: datetime | None  # the client certificate's NotAfter, when there is one
    report: Report

    def to_dict(self) -> dict:
        return {"path": str(self.path), "user": self.user, "server": self.server,
                "expires": self.expires.isoformat() if self.expires else None, "report": self.report.to_dict()}


def parse_expiry(text: str) -> int:
    """Seconds of ``24h``, ``90m``, ``7d``, ``1d12h`` (days are allowed here; kubeadm gets seconds)."""
    s = text.strip()
    parts = _PART.findall(s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise UsageError(f"--expires {text!r}: expected a duration such as 24h, 90m, 7d or 1d12h")
    seconds = sum(int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if not 60 <= seconds <= MAX_SECONDS:
        raise UsageError(f"--expires {text!r}: between 1 minute and 10 years")
    return seconds


def _private_dir(cluster: Cluster, path: Path) -> None:
    """Create the kubeconfig's directory 0700; inside the cluster's state dir make sure it is 0700
    (an operator's existing --out directory is left as it is)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    state = cluster.state_dir.absolute()
    for d in (path, *path.parents):
        if d == state or state in d.parents:
            d.chmod(0o700)


def _read(path: Path, *, with_expiry: bool) -> tuple[str | None, datetime | None]:
    """(server, client certificate NotAfter when ``with_expiry``) of a kubeconfig file."""
    import base64

    from ruamel.yaml import YAML

    from kubeforge.pki.crypto import load_cert

    try:
        doc = YAML(typ="safe", pure=True).load(path.read_text())
        server = doc["clusters"][0]["cluster"]["server"]
    except Exception as exc:  # noqa: BLE001 - a file that is not a kubeconfig: say so rather than pretend
        raise InputError(f"{path}: the fetched file is not a kubeconfig ({exc})") from None
    expires = None
    data = (doc.get("users") or [{}])[0].get("user", {}).get("client-certificate-data")
    if data and with_expiry:
        expires = load_cert(base64.b64decode(data)).not_valid_after_utc
    return server, expires


def fetch_kubeconfig(cluster: Cluster, pool, *, out: Path | None = None, user: str | None = None,
                     expires: str | None = None, orgs: tuple[str, ...] = (), run_dir: Path | None = None,
                     events=None) -> KubeconfigResult:
    """Fetch or refresh the admin kubeconfig (``user`` None), or write one for ``user`` valid for
    ``expires``. Raises ExecutionFailed when a step fails on the control plane."""
    from kubeforge.execute.engine import RunOptions, Site, execute
    from kubeforge.facts import gather_facts
    from kubeforge.plan.kubeconfig import plan_admin, plan_user
    from kubeforge.workflows.common import require_reached

    if expires is not None and user is None:
        raise UsageError("--expires is for a named user's kubeconfig: add --user NAME")
    if user is None:
        dest = (out or cluster.state_dir / ADMIN_LOCAL).absolute()
        plan = plan_admin(cluster, str(dest))
    else:
        seconds = parse_expiry(expires or "24h")
        dest = (out or cluster.state_dir / USERS_DIR / f"{user}.conf").absolute()
        try:
            plan = plan_user(cluster, str(dest), user, seconds, orgs, f"/run/kubeforge-kubeconfig-{secrets.token_hex(6)}")
        except ValueError as exc:
            raise UsageError(f"--user/--org: {exc}") from None
    # The control plane's facts first: an unreachable host is exit 5 here, not a failed step (6).
    require_reached(gather_facts(pool, [cluster.first_control_plane], limit=1, etcd_data_dir=cluster.etcd.data_dir))
    _private_dir(cluster, dest.parent)
    # The local lock only: a fetch changes nothing on the hosts, but not while another run rewrites
    # the cluster's local state.
    run = execute(plan, Site(cluster.state_dir, pool, lock_host=None, run_dir=run_dir),
                  RunOptions(command=f"kubeforge {plan.workflow}"), events=events)
    assert run is not None  # no confirmation is asked
    report = run.report
    dest.chmod(0o600)
    server, not_after = _read(dest, with_expiry=user is not None)
    return KubeconfigResult(dest, user or "kubernetes-admin", server, not_after, report)


def expires_in(result: KubeconfigResult, now: datetime | None = None) -> timedelta | None:
    if result.expires is None:
        return None
    return result.expires - (now or datetime.now(UTC))
