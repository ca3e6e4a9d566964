"""The upgrade's phases, one module each, and its planner (see planner.py for the order)."""

from kubeforge.plan.upgrade.check_removed_apis import CheckRemovedAPIs, check_removed_apis  # noqa: F401
from kubeforge.plan.upgrade.check_safety import check_upgrade_safety, minors_to_read  # noqa: F401
from kubeforge.plan.upgrade.context import UpgradeContext  # noqa: F401
from kubeforge.plan.upgrade.planner import (  # noqa: F401
    PHASES,
    hop_files,
    plan_hop,
    plan_path,
    workflow_name,
)
from kubeforge.plan.upgrade.state import (  # noqa: F401
    UpgradeFacts,
    after_hop,
)
