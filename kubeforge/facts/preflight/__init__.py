"""Preflight checks over gathered facts and probe results: pure, so recorded facts test them.

The composition (which checks run, in which order) is kubeforge.workflows.preflight.run_preflight.
"""

from kubeforge.facts.preflight.probes import (  # noqa: F401
    Connection,
    ConnectResults,
    FsyncResult,
    Listening,
    ProbeResults,
)
from kubeforge.facts.preflight.report import CheckResult, PreflightReport, Status, make_report  # noqa: F401
