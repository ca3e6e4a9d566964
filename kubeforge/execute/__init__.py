"""Running plans: the engine (the one path of every mutating run), the executor, the dry-run executor,
the journal, the locks, the stop request, the report."""

from kubeforge.execute.confirm import run_confirmed  # noqa: F401
from kubeforge.execute.dry_run import DryRunExecutor  # noqa: F401
from kubeforge.execute.engine import Run, RunOptions, Site, completed_steps, execute  # noqa: F401
from kubeforge.execute.events import Events, Recorder  # noqa: F401
from kubeforge.execute.executor import Executor  # noqa: F401
from kubeforge.execute.journal import Journal, latest_unfinished, new_run_id  # noqa: F401
from kubeforge.execute.lock import ClusterLock, LocalLock, LockInfo  # noqa: F401
from kubeforge.execute.report import Report, StepResult, StepStatus  # noqa: F401
from kubeforge.execute.stop import Stop  # noqa: F401
