"""How long each certificate of the cluster has left."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubeforge.pki.bundle import PkiBundle


@dataclass(frozen=True)
class CertStatus:
    name: str  # store item: "etcd-ca", "etcd-server/etcd-1", ...
    subject: str
    not_after: datetime
    days_left: int  # whole days, negative once expired
    path: Path | None

    def expires_within(self, days: int) -> bool:
        return self.days_left <= days

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "subject": self.subject,
            "notAfter": self.not_after.isoformat(),
            "daysLeft": self.days_left,
            "path": str(self.path) if self.path else None,
        }


def expiry_report(bundle: PkiBundle, now: datetime | None = None) -> list[CertStatus]:
    """Every certificate in the bundle with its expiry, in the bundle's order (CAs first)."""
    now = now or datetime.now(UTC)
    out = []
    for name, pair in bundle.certificates():
        not_after = pair.cert.not_valid_after_utc
        # floor division: 10 days and 3 hours left is 10 days, 3 hours past expiry is -1.
        days_left = (not_after - now).days
        out.append(CertStatus(name, pair.cert.subject.rfc4514_string(), not_after, days_left, pair.path))
    return out


def expiring(report: list[CertStatus], within_days: int) -> list[CertStatus]:
    return [s for s in report if s.expires_within(within_days)]
