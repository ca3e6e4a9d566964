"""The expiry report with an injected clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubeforge.model import PkiSettings
from kubeforge.pki import ensure_pki, expiring, expiry_report, load_pki
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_report_lists_every_certificate_with_subject_path_and_days_left(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    bundle = ensure_pki(cluster, now=NOW).bundle
    report = expiry_report(bundle, NOW)
    names = [s.name for s in report]
    assert names[:3] == ["etcd-ca", "kubernetes-ca", "front-proxy-ca"]
    assert len(names) == 3 + 2 * 3 + 2
    ca = report[1]
    assert (ca.subject, ca.days_left, ca.path) == ("CN=kubernetes", 3650, cluster.pki_dir / "ca.crt")
    server = next(s for s in report if s.name == "etcd-server/etcd-1")
    assert server.days_left == 365 and server.path == cluster.pki_dir / "etcd/members/etcd-1/server.crt"


def test_a_leaf_expiring_in_ten_days_is_flagged_within_thirty_days(tmp_path: Path):
    cluster = dataclasses.replace(make_cluster(tmp_path), pki=PkiSettings(leaf_days=365))
    ensure_pki(cluster, now=NOW)
    later = NOW + timedelta(days=355)
    report = expiry_report(load_pki(cluster), later)
    flagged = expiring(report, 30)
    assert flagged and all(s.days_left == 10 for s in flagged)
    assert {s.name for s in flagged} == {s.name for s in report if not s.name.endswith("-ca")}
    assert expiring(report, 9) == []


def test_an_expired_certificate_has_negative_days_left(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    bundle = ensure_pki(cluster, now=NOW).bundle
    report = expiry_report(bundle, NOW + timedelta(days=366))
    assert next(s for s in report if s.name == "apiserver-etcd-client").days_left == -1
    assert report[0].to_json()["daysLeft"] == 3650 - 366
