"""`kubeforge certs check`: the report printed from the local store, exit 9 for certificates expiring soon."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from kubeforge.cli.certs import check, register
from kubeforge.errors import CertificatesExpiring, UsageError
from kubeforge.pki import PkiStoreError, ensure_pki
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def console() -> Console:
    return Console(file=io.StringIO(), width=200, force_terminal=False, highlight=False)


@pytest.fixture
def cluster(tmp_path: Path):
    c = make_cluster(tmp_path)
    ensure_pki(c, now=NOW)
    return c


def test_table_lists_every_certificate_and_passes_when_nothing_expires_soon(cluster):
    out = console()
    check(cluster, within_days=30, now=NOW, console=out)
    text = out.file.getvalue()
    for name in ("etcd-ca", "kubernetes-ca", "front-proxy-ca", "etcd-server/etcd-3", "apiserver-etcd-client"):
        assert name in text
    assert "365" in text and "3650" in text


def test_a_leaf_expiring_in_ten_days_fails_with_exit_code_9_at_thirty_days(cluster):
    out = console()
    with pytest.raises(CertificatesExpiring) as err:
        check(cluster, within_days=30, now=NOW + timedelta(days=355), console=out)
    assert out.file.getvalue().count("EXPIRING") == 8
    assert err.value.exit_code == 9
    assert "8 certificates expire within 30 days" in str(err.value) and "etcd-peer/etcd-1" in str(err.value)
    check(cluster, within_days=5, now=NOW + timedelta(days=355), console=console())


def test_json_output_is_one_document_with_days_left_and_the_expiring_flag(cluster):
    out = console()
    with pytest.raises(CertificatesExpiring):
        check(cluster, within_days=30, output="json", now=NOW + timedelta(days=355), console=out)
    doc = json.loads(out.file.getvalue())
    assert doc["withinDays"] == 30 and doc["cluster"] == cluster.name
    by_name = {c["name"]: c for c in doc["certificates"]}
    assert by_name["etcd-server/etcd-1"]["daysLeft"] == 10 and by_name["etcd-server/etcd-1"]["expiring"]
    assert not by_name["etcd-ca"]["expiring"]
    assert "PRIVATE KEY" not in out.file.getvalue()


def test_a_missing_store_is_reported_with_the_render_hint_and_nothing_is_created(tmp_path: Path):
    c = make_cluster(tmp_path)
    with pytest.raises(PkiStoreError) as err:
        check(c, now=NOW, console=console())
    assert "kubeforge render" in err.value.hint
    assert not c.pki_dir.exists()


def test_an_unknown_output_format_is_a_usage_error(cluster):
    with pytest.raises(UsageError, match="--output 'xml'"):
        check(cluster, output="xml", console=console())


def test_register_adds_a_certs_group_with_check():
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the group into the root
        pass

    result = CliRunner().invoke(app, ["certs", "check", "--help"])
    assert result.exit_code == 0 and "--within-days" in result.output and "--inventory" in result.output


INVENTORY = Path(__file__).resolve().parents[2] / "inventories" / "ha-external-etcd.yaml"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kubeforge", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


def test_the_command_reads_the_store_beside_a_real_inventory_and_exits_by_the_window(tmp_path: Path):
    from kubeforge.inventory import load_cluster

    inventory = tmp_path / "cluster.yaml"
    inventory.write_bytes(INVENTORY.read_bytes())
    missing = run_cli("certs", "check", "--store-only", "-i", str(inventory), cwd=tmp_path)
    assert missing.returncode == 3 and "no PKI store" in missing.stderr and "kubeforge render" in missing.stderr
    ensure_pki(load_cluster(inventory))
    fine = run_cli("certs", "check", "--store-only", "-i", str(inventory), cwd=tmp_path)
    assert fine.returncode == 0, fine.stderr
    assert "apiserver-etcd-client" in fine.stdout and "EXPIRING" not in fine.stdout
    soon = run_cli("certs", "check", "--store-only", "-i", str(inventory), "--within-days", "400", "-o", "json", cwd=tmp_path)
    assert soon.returncode == 9 and "8 certificates expire within 400 days" in soon.stderr
    assert len(json.loads(soon.stdout)["certificates"]) == 11
