"""CheckRemovedAPIs: before each minor hop, the objects still written in API versions the hop's minor
no longer serves (kubeforge/model/versions.yaml removedAPIs; found by facts.removed_apis).

    check_removed_apis(facts, path, allow=False)   # SafetyRefusal (exit 7) naming every object
    CheckRemovedAPIs().plan(ctx)                   # the hop's warning phase (a no-op without findings)

Without ``--allow-removed-apis`` an upgrade whose path crosses such a removal is refused before
anything is touched; with it, each hop's plan starts with a warning that lists the objects.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.removed_apis import StoredObject
from kubeforge.model.removed_apis import removed_between
from kubeforge.model.versions import KubeVersion
from kubeforge.plan.phase import PhasePlan
from kubeforge.plan.steps import LocalStep
from kubeforge.plan.strategy import serial
from kubeforge.plan.upgrade.state import UpgradeFacts
from kubeforge.plan.warning import warn_step_fn

log = logging.getLogger("kubeforge.upgrade")
FLAG = "--allow-removed-apis"
DATA = "kubeforge/model/versions.yaml removedAPIs"


def serving_minor(facts: UpgradeFacts) -> tuple[int, int] | None:
    """The oldest API server's minor: what the cluster serves before the hop."""
    versions = [m.apiserver for m in facts.machines.values() if m.apiserver is not None]
    return min(versions).minor_key if versions else None


def hop_findings(facts: UpgradeFacts, start: tuple[int, int], hop: KubeVersion) -> list[StoredObject]:
    """Objects of the scan written in versions removed after ``start`` up to the hop's minor."""
    if facts.removed_apis is None:
        return []
    gone = {a.group_version for a in removed_between(start, hop.minor_key)}
    return facts.removed_apis.in_versions(gone)


def hops_with_start(facts: UpgradeFacts, path: Sequence[KubeVersion]) -> list[tuple[tuple[int, int], KubeVersion]]:
    start = serving_minor(facts)
    out = []
    for hop in path:
        if start is not None and hop.minor_key > start:
            out.append((start, hop))
        start = max(start, hop.minor_key) if start is not None else hop.minor_key
    return out


def _listing(objects: Sequence[StoredObject]) -> str:
    return "\n".join(f"  - {o}" for o in objects)


def check_removed_apis(facts: UpgradeFacts, path: Sequence[KubeVersion], *, allow: bool) -> None:
    """Refuse a path whose minor hops would stop serving versions objects are still written in, or
    whose scan could not be completed. With ``allow`` only log (the plan carries the warnings)."""
    scan = facts.removed_apis
    blocks = []
    for start, hop in hops_with_start(facts, path):
        found = hop_findings(facts, start, hop)
        if found:
            blocks.append(f"{start[0]}.{start[1]} -> {hop.minor_str} stops serving API versions these still use:\n"
                          + _listing(found))
    if scan is not None and scan.problems:
        blocks.append("the removed-API scan is incomplete:\n" + "\n".join(f"  - {p}" for p in scan.problems))
    if not blocks:
        return
    message = "\n".join(blocks)
    if allow:
        log.warning("%s (going on: %s)", message, FLAG)
        return
    raise SafetyRefusal(
        "refusing the upgrade: " + message,
        hint=("re-write each object in a served version (e.g. `kubectl apply --server-side` of the migrated "
              f"manifest) or delete it, then run again; or accept the risk with {FLAG}. Data: {DATA}. "
              "Nothing was changed"),
    )


class CheckRemovedAPIs:
    name = "CheckRemovedAPIs"
    title = "Check for objects in removed API versions"
    strategy = serial()

    def title_for(self, ctx) -> str:
        return ctx.title(self.title)

    def plan(self, ctx) -> PhasePlan:
        start = serving_minor(ctx.facts)
        if start is None or ctx.target.minor_key <= start:
            return PhasePlan.of(self, (), title=self.title_for(ctx), reason_if_empty="not a minor hop")
        found = hop_findings(ctx.facts, start, ctx.target)
        if not found:
            gone = removed_between(start, ctx.target.minor_key)
            why = (f"{ctx.target.minor_str} serves every API version {start[0]}.{start[1]} does ({DATA})" if not gone
                   else "the removed-API scan did not run" if ctx.facts.removed_apis is None
                   else "no object is written in an API version it stops serving")
            return PhasePlan.of(self, (), title=self.title_for(ctx), reason_if_empty=why)
        message = (f"{FLAG}: {ctx.target.minor_str} stops serving API versions these objects still use; "
                   "going on anyway: " + "; ".join(str(o) for o in found))
        return PhasePlan.of(self, title=self.title_for(ctx), lanes=[("local", [LocalStep(f"Warning: {message}", warn_step_fn(message, log),
                                                        key=ctx.key("removed-apis-warning"))])])
