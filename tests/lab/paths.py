"""Where the lab keeps things on the runner, and how one lab is told apart from another.

Everything built once (root filesystems, downloaded .debs, the SSH key) lives under the cache dir;
everything belonging to one running lab (state.json, known_hosts, inventory, overlays, the mirror)
lives under the run dir, so ``down --all`` can find every leftover by looking there.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

CACHE_DIR = Path(os.environ.get("KUBEFORGE_LAB_CACHE", "/var/cache/kubeforge-lab"))
RUN_DIR = Path(os.environ.get("KUBEFORGE_LAB_RUN", "/run/kubeforge-lab"))
BRIDGE_PREFIX = "kfnbr"
VIP_HOST = 100  # the VIP's host part in every lab's /24
MAX_ADDRESSES = 200


class LabError(RuntimeError):
    """Something the lab could not do; the message says what and where."""


@dataclass(frozen=True)
class LabId:
    """One lab on this runner. Index N gives bridge kfnbrN and subnet 10.77.(4+N).0/24, so labs
    booted side by side (a session lab plus a bigger one from a factory) never clash."""

    index: int = 0

    @property
    def name(self) -> str:
        return f"lab{self.index}"

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def network(self) -> ipaddress.IPv4Network:
        if not 0 <= self.index < 200:
            raise LabError(f"lab index {self.index} out of range 0..199")
        return ipaddress.IPv4Network(f"10.77.{4 + self.index}.0/24")

    @property
    def gateway(self) -> str:
        """The runner's address on the bridge: the mirror and ssh-keyscan use it."""
        return str(self.network.network_address + 1)

    def address(self, i: int) -> str:
        """Machine i (1-based) lives at .10+i, past the VIP's .100 at .11+i (a fleet lab's machines 90
        and on), so a lab of up to 200 machines fits its /24 (.11 to .211) beside the gateway and VIP."""
        if not 1 <= i <= MAX_ADDRESSES:
            raise LabError(f"machine {i}: a lab's subnet holds machines 1..{MAX_ADDRESSES}")
        return str(self.network.network_address + 10 + i + (1 if 10 + i >= VIP_HOST else 0))

    @property
    def vip(self) -> str:
        """A free address for a virtual IP (keepalived); no machine is given it."""
        return str(self.network.network_address + VIP_HOST)

    @property
    def mirror_port(self) -> int:
        return 8470 + self.index

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.name

    @property
    def state_file(self) -> Path:
        return self.run_dir / "state.json"

    def machine_name(self, i: int) -> str:
        # nspawn names the host side of the veth "vb-<machine>"; keep it under 15 characters.
        return f"kfn{self.index}-{i}"


def ssh_key_paths() -> tuple[Path, Path]:
    d = CACHE_DIR / "ssh"
    return d / "id_ed25519", d / "id_ed25519.pub"
