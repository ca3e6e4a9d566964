"""Read-only facts about hosts: one script per host, split into sections, one pure parser each.

    facts = gather_facts(pool, cluster.hosts, limit=cluster.parallelism)
    facts["cp-1"].swap.enabled  # HostFacts, or FactsError when the host was not reached
"""

from kubeforge.facts.gather import facts_command, gather_facts, gather_host  # noqa: F401
from kubeforge.facts.script import build_script, parse_host_facts, split_sections  # noqa: F401
from kubeforge.facts.types import (  # noqa: F401
    Applied,
    ClockSample,
    Disks,
    DiskUsage,
    FactsError,
    Held,
    HostFacts,
    Listener,
    Macs,
    Membership,
    Memory,
    Modules,
    ModuleState,
    OsInfo,
    Packages,
    Ports,
    Swap,
    SwapDevice,
    Sysctls,
    Units,
    UnitState,
)
