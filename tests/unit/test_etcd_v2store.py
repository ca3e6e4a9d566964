"""The v2-store check before etcd 3.5 -> 3.6: the probe's output parsed (as the lab's bash prints it),
and which upgrades need it."""

from __future__ import annotations

import subprocess

from kubeforge.facts.etcd_v2store import parse_v2store, v2store_probe
from kubeforge.model.upgrade_path import needs_v2store_check
from kubeforge.model.versions import Version
from tests.factories import make_cluster

V = Version.parse


def test_only_leaving_3_5_needs_the_v2store_check():
    assert needs_v2store_check(V("3.5.33"), V("3.6.14"))
    assert not needs_v2store_check(V("3.5.30"), V("3.5.33"))  # a patch upgrade
    assert not needs_v2store_check(V("3.6.11"), V("3.7.1"))  # 3.6 already dropped the v2 store


def test_a_member_with_etcdutl_and_a_clean_store_passes():
    s = parse_v2store("@@enable-v2 no\n@@etcdutl /usr/local/bin/etcdutl\nNo custom content found in v2store\n@@rc 0\n")
    assert (s.enabled_now, s.etcdutl, s.clean) == (False, "/usr/local/bin/etcdutl", True)


def test_custom_v2_data_is_reported_with_etcdutls_words():
    s = parse_v2store("@@enable-v2 no\n@@etcdutl /usr/bin/etcdutl\nError: detected custom content in v2store\n@@rc 1\n")
    assert s.clean is False and "detected custom content in v2store" in s.detail


def test_a_member_without_etcdutl_is_checked_for_the_flag_only():
    s = parse_v2store("@@enable-v2 yes\n@@etcdutl none\n")
    assert (s.enabled_now, s.etcdutl, s.clean) == (True, None, None)


def test_the_probe_runs_in_bash_and_changes_nothing(tmp_path):
    """Run the real script on this machine (no etcd here): it reports no flag and no etcdutl, or
    what etcdutl says of an empty data dir, and exits 0."""
    c = make_cluster(tmp_path)
    script = v2store_probe(c).script.replace(c.etcd.data_dir, str(tmp_path / "data"))
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    s = parse_v2store(res.stdout)
    assert s.enabled_now is False
    assert not (tmp_path / "data").exists()
