"""Plans are data: Step types, the Phase protocol, strategies, and the Plan a workflow runs."""

from kubeforge.plan.phase import HostLane, Phase, PhasePlan, Plan, build_plan  # noqa: F401
from kubeforge.plan.steps import (  # noqa: F401
    LOCAL,
    DescribedStep,
    GateStep,
    GetFileStep,
    LocalStep,
    PutFileStep,
    RunStep,
    Step,
)
from kubeforge.plan.strategy import Strategy, batched, parallel, rolling, serial, with_gates  # noqa: F401
