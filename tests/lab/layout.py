"""Which machines a lab has and what roles they play, from a short description.

``layout(None)`` is the default three machines; ``layout(5)`` is five generic ones;
``layout({"etcd": 3, "control-plane": 2, "worker": 2})`` names machines by role (etcd-1, cp-1, ...);
``layout([("a", ["control-plane"]), ...])`` or ``layout([["control-plane"], ["worker"]])`` gives
explicit roles per machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tests.lab.paths import LabError

ROLES = ("etcd", "control-plane", "worker", "load-balancer")
ROLE_PREFIX = {"etcd": "etcd", "control-plane": "cp", "worker": "worker", "load-balancer": "lb"}
# a fleet lab (bench/fleet.py) boots 100; the subnet holds 200 (tests/lab/paths.py)
MAX_MACHINES = 120


@dataclass(frozen=True)
class MachineSpec:
    name: str  # hostname inside the machine and its name in the inventory
    roles: tuple[str, ...]
    persistent: bool = False  # keep the disk across stop/start (overlay upper dir in the state dir)


Layout = None | int | Mapping[str, int] | Sequence


def layout(spec: Layout = None, *, persistent: Sequence[str] = ()) -> list[MachineSpec]:
    if spec is None:
        # three hosts that can carry a 3-member etcd and a small cluster at once
        specs = [("lab-1", ("control-plane", "etcd")), ("lab-2", ("etcd", "worker")), ("lab-3", ("etcd", "worker"))]
    elif isinstance(spec, int):
        if spec < 1:
            raise LabError(f"a lab needs at least one machine, not {spec}")
        specs = []
        for i in range(1, spec + 1):
            roles = ["control-plane"] if i == 1 else ["worker"]
            if i <= (3 if spec >= 3 else 1):
                roles.append("etcd")
            specs.append((f"lab-{i}", tuple(roles)))
    elif isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(ROLES))
        if unknown:
            raise LabError(f"unknown role(s) {unknown}; roles are {', '.join(ROLES)}")
        specs = []
        for role in ROLES:
            for n in range(1, int(spec.get(role, 0)) + 1):
                specs.append((f"{ROLE_PREFIX[role]}-{n}", (role,)))
    else:
        specs = []
        for i, item in enumerate(spec, start=1):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                name, roles = item
            else:
                name, roles = f"lab-{i}", item
            bad = [r for r in roles if r not in ROLES]
            if bad:
                raise LabError(f"machine {name}: unknown role(s) {bad}; roles are {', '.join(ROLES)}")
            specs.append((name, tuple(roles)))
    if not specs or len(specs) > MAX_MACHINES:
        raise LabError(f"a lab has 1..{MAX_MACHINES} machines, not {len(specs)}")
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise LabError(f"machine names repeat: {names}")
    return [MachineSpec(n, r, persistent=n in persistent) for n, r in specs]
