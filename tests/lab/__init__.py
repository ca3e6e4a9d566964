"""The lab: real machines (systemd-nspawn containers) on this runner for integration tests.

``python -m tests.lab up|down|status|ssh NAME|prepare|mirror``; pytest fixtures in tests.lab.fixtures.
"""

from tests.lab.lab import Lab, Machine
from tests.lab.layout import MachineSpec, layout
from tests.lab.paths import LabError, LabId

__all__ = ["Lab", "LabError", "LabId", "Machine", "MachineSpec", "layout"]
