"""The one rule `up` and `etcd install` share: they never change the version of what already runs.

An inventory older than what runs would downgrade it (the inventory left behind after an upgrade);
a newer one would skip the upgrade's rules (drains and order, snapshot, one member at a time). The
operator is told which of the two and the way out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kubeforge.errors import SafetyRefusal
from kubeforge.model.versions import Version


def refuse_version_change(running: Mapping[str, str], want: Version, parse: Callable[[str], Version], *,
                          what: str, field: str, source: object, upgrade: str) -> None:
    """``running``: host -> the version it runs, for hosts already in service. ``what``: "etcd",
    "Kubernetes"; ``field``: the inventory field; ``upgrade``: the command that changes versions."""
    other = {n: v for n, v in running.items() if parse(v) != want}
    if not other:
        return
    listed = ", ".join(f"{n} runs {v}" for n, v in sorted(other.items()))
    if any(parse(v) > want for v in other.values()):
        hint = (f"set {field} in {source} to the version that runs (after `{upgrade}` the inventory is the "
                "operator's to update)")
    else:
        hint = f"change versions with `{upgrade} -i {source} --to {want}` (or --resume an unfinished one)"
    raise SafetyRefusal(f"{listed}; the inventory says {what} {want}: a version that runs is never changed here",
                        hint=hint)
