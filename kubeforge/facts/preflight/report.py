"""Preflight results: one pass/warn/fail with a message per host and check, as data."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    def __str__(self) -> str:
        return self.value


_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True)
class CheckResult:
    host: str
    check: str  # stable id: "swap", "ports", "clock-skew"...
    status: Status
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"host": self.host, "check": self.check, "status": self.status.value, "message": self.message}


def passed(host: str, check: str, message: str) -> CheckResult:
    return CheckResult(host, check, Status.PASS, message)


def warned(host: str, check: str, message: str) -> CheckResult:
    return CheckResult(host, check, Status.WARN, message)


def failed(host: str, check: str, message: str) -> CheckResult:
    return CheckResult(host, check, Status.FAIL, message)


@dataclass(frozen=True)
class PreflightReport:
    hosts: tuple[str, ...]  # inventory order
    results: tuple[CheckResult, ...]
    generated_at: float  # epoch seconds, the ``now`` preflight was given

    @property
    def failed(self) -> bool:
        return any(r.status is Status.FAIL for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status is Status.FAIL)

    @property
    def warnings(self) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.status is Status.WARN)

    @property
    def checks(self) -> tuple[str, ...]:
        """Check ids in the order they first appear."""
        seen: dict[str, None] = {}
        for r in self.results:
            seen.setdefault(r.check, None)
        return tuple(seen)

    def for_host(self, host: str) -> tuple[CheckResult, ...]:
        return tuple(r for r in self.results if r.host == host)

    def get(self, host: str, check: str) -> CheckResult | None:
        """The worst result of ``check`` on ``host`` (checks may yield several)."""
        found = [r for r in self.results if r.host == host and r.check == check]
        return max(found, key=lambda r: _RANK[r.status]) if found else None

    def status(self, host: str) -> Status:
        found = self.for_host(host)
        return max((r.status for r in found), key=_RANK.__getitem__, default=Status.PASS)

    def summary(self) -> str:
        nf = len({r.host for r in self.failures})
        nw = len(self.warnings)
        if not self.failed:
            return f"preflight passed on {len(self.hosts)} host(s)" + (f" with {nw} warning(s)" if nw else "")
        return f"preflight failed on {nf} of {len(self.hosts)} host(s): {len(self.failures)} failure(s), {nw} warning(s)"

    def render_text(self) -> str:
        """Plain text, failures first: what the error boundary prints under the one-line error."""
        lines = [f"[{r.host}] {r.check}: {r.message}" for r in self.failures]
        lines += [f"[{r.host}] {r.check}: warning: {r.message}" for r in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "passed": not self.failed,
            "summary": self.summary(),
            "hosts": {
                h: {"status": self.status(h).value, "checks": [r.to_dict() for r in self.for_host(h)]}
                for h in self.hosts
            },
        }


def make_report(hosts: Iterable[str], results: Iterable[CheckResult], now: float) -> PreflightReport:
    order = {h: i for i, h in enumerate(hosts)}
    ordered = sorted(results, key=lambda r: order.get(r.host, len(order)))  # stable: keeps check order
    return PreflightReport(hosts=tuple(order), results=tuple(ordered), generated_at=now)
