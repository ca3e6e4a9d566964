"""Running plans: the executor, the dry-run executor, the journal, the locks, the report."""

from kubeforge.execute.confirm import run_confirmed  # noqa: F401
from kubeforge.execute.dry_run import DryRunExecutor  # noqa: F401
from kubeforge.execute.events import Events, Recorder  # noqa: F401
from kubeforge.execute.executor import Executor  # noqa: F401
from kubeforge.execute.journal import Journal, latest_unfinished, new_run_id  # noqa: F401
from kubeforge.execute.lock import ClusterLock, LocalLock, LockInfo, hold_locks  # noqa: F401
from kubeforge.execute.report import Report, StepResult, StepStatus  # noqa: F401
from kubeforge.execute.run import RunOptions, completed_steps, execute_plan  # noqa: F401
