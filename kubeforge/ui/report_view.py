"""The final report: a table per host of done / unchanged / failed / not reached, the failures with
their masked command, exit status and stderr tail, and where the run's log is."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kubeforge.execute.report import COUNTED, OPTIONAL, Report, StepStatus
from kubeforge.model.secret import redact

_STYLE = {
    StepStatus.DONE: "green",
    StepStatus.UNCHANGED: "dim",
    StepStatus.FAILED: "bold red",
    StepStatus.INTERRUPTED: "magenta",
    StepStatus.NOT_REACHED: "yellow",
    StepStatus.EARLIER: "dim",
}


def report_table(report: Report) -> Table:
    # A light box: the table also lands in CI logs and terminals without box-drawing fonts.
    table = Table(title=f"{report.workflow}: {report.outcome}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("host")
    statuses = [s for s in COUNTED if s not in OPTIONAL or report.hosts_with(s)]
    for s in statuses:
        table.add_column(s.value, justify="right", style=_STYLE[s])
    for host, row in report.counts().items():
        table.add_row(host, *(str(row[s.value]) for s in statuses))
    return table


def print_report(console: Console, report: Report) -> None:
    if report.outcome == "dry-run":
        n = sum(1 for r in report.results if r.status is StepStatus.PLANNED)
        console.print(f"dry run: {n} step{'s' if n != 1 else ''} would run; nothing was changed")
        return
    console.print(report_table(report))
    for r in report.failed:
        line = Text("failed ", style="bold red")
        line.append(f"[{r.host}] {redact(r.title)}: {redact(r.message)}")
        console.print(line)
        if r.command:
            console.print(f"  command: {redact(r.command)}", markup=False)
        if r.exit_status is not None:
            console.print(f"  exit status: {r.exit_status}", markup=False)
        for tail_line in r.stderr_tail.strip().splitlines()[-5:]:
            console.print(f"  | {redact(tail_line)}", markup=False)
    untouched = report.untouched_hosts()
    if untouched and report.outcome != "succeeded":
        console.print("never touched: " + ", ".join(untouched), markup=False)
    if report.log_path:
        console.print(f"log: {report.log_path}", markup=False)
    elif report.run_dir:
        console.print(f"run: {report.run_dir}", markup=False)
