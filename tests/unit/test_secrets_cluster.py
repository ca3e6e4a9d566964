"""Cluster secrets: kubeadm formats, stored 0600, generated once, never printed."""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubeforge.pki import PkiStoreError, ensure_secrets, rotate_bootstrap_token
from kubeforge.pki.secrets import SECRETS_FILE
from tests.factories import make_cluster

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_secrets_have_kubeadms_formats(tmp_path: Path):
    s = ensure_secrets(make_cluster(tmp_path), now=NOW)
    assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", s.bootstrap_token.reveal())
    assert re.fullmatch(r"[0-9a-f]{64}", s.certificate_key.reveal())
    assert s.bootstrap_token_id == s.bootstrap_token.reveal()[:6]


def test_secrets_are_generated_once_and_reused(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    first = ensure_secrets(cluster, now=NOW)
    before = (cluster.pki_dir / SECRETS_FILE).read_bytes()
    second = ensure_secrets(cluster, now=NOW + timedelta(hours=1))
    assert second == first
    assert (cluster.pki_dir / SECRETS_FILE).read_bytes() == before


def test_secrets_file_is_0600_in_a_0700_directory(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_secrets(cluster, now=NOW)
    assert stat.S_IMODE((cluster.pki_dir / SECRETS_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(cluster.pki_dir.stat().st_mode) == 0o700


def test_secret_values_never_show_in_repr_or_str(tmp_path: Path):
    s = ensure_secrets(make_cluster(tmp_path), now=NOW)
    text = repr(s) + str(s) + f"{s.bootstrap_token} {s.certificate_key}"
    assert s.bootstrap_token.reveal() not in text and s.certificate_key.reveal() not in text


def test_bootstrap_token_expires_after_its_ttl(tmp_path: Path):
    s = ensure_secrets(make_cluster(tmp_path), now=NOW, ttl=timedelta(hours=2))
    assert s.bootstrap_token_expires == NOW + timedelta(hours=2)
    assert not s.bootstrap_token_expired(NOW + timedelta(hours=1))
    assert s.bootstrap_token_expired(NOW + timedelta(hours=2))


def test_default_ttl_is_kubeadms_24_hours(tmp_path: Path):
    assert ensure_secrets(make_cluster(tmp_path), now=NOW).bootstrap_token_ttl == timedelta(hours=24)


def test_rotating_the_token_keeps_the_certificate_key_and_persists(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    old = ensure_secrets(cluster, now=NOW)
    new = rotate_bootstrap_token(cluster, now=NOW + timedelta(days=2))
    assert new.bootstrap_token != old.bootstrap_token
    assert new.certificate_key == old.certificate_key
    assert new.bootstrap_token_created == NOW + timedelta(days=2)
    assert ensure_secrets(cluster) == new


def test_a_tampered_secrets_file_is_an_error_that_does_not_echo_its_content(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    ensure_secrets(cluster, now=NOW)
    path = cluster.pki_dir / SECRETS_FILE
    doc = json.loads(path.read_text())
    doc["bootstrapToken"] = "NOT-A-TOKEN-supersecretvalue"
    path.write_text(json.dumps(doc))
    with pytest.raises(PkiStoreError) as err:
        ensure_secrets(cluster)
    assert str(path) in str(err.value) and "supersecretvalue" not in str(err.value)


def test_an_unparseable_secrets_file_is_a_clean_error(tmp_path: Path):
    cluster = make_cluster(tmp_path)
    cluster.pki_dir.mkdir(parents=True)
    (cluster.pki_dir / SECRETS_FILE).write_text("{ not json")
    with pytest.raises(PkiStoreError, match="unreadable cluster secrets"):
        ensure_secrets(cluster)
