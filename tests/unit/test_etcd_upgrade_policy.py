"""etcd upgrade decisions that need no host: the path and its reasons, --allow-older-patch, members
left mid-upgrade, what the package source offers, and auth. Outputs are recorded from real apt and
real etcdctl 3.4.23 (Debian bookworm)."""

from __future__ import annotations

import re

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.etcd_upgrade import AuthState, parse_auth, parse_offered
from kubeforge.model.upgrade_path import etcd_upgrade_hops, etcd_upgrade_path
from kubeforge.model.versions import Version, etcd_minors
from kubeforge.workflows.etcd.upgrade import check_auth, check_offered, crosses_34_to_35, decide

V = Version.parse
PKGS = ("etcd-server", "etcd-client")

# `apt-cache madison etcd-server etcd-client` against the lab's flat mirror with three versions
MADISON_MIRROR = """\
etcd-server |   3.5.30-2 | http://10.77.4.1:8080/debian ./ Packages
etcd-server |   3.5.16-4 | http://10.77.4.1:8080/debian ./ Packages
etcd-server | 3.4.23-4+b4 | http://10.77.4.1:8080/debian ./ Packages
etcd-client |   3.5.30-2 | http://10.77.4.1:8080/debian ./ Packages
etcd-client |   3.5.16-4 | http://10.77.4.1:8080/debian ./ Packages
etcd-client | 3.4.23-4+b4 | http://10.77.4.1:8080/debian ./ Packages
"""
# the same against Debian bookworm (recorded on the runner)
MADISON_BOOKWORM = """\
etcd-server | 3.4.23-4+b4 | http://deb.debian.org/debian bookworm/main amd64 Packages
etcd-client | 3.4.23-4+b4 | http://deb.debian.org/debian bookworm/main amd64 Packages
"""
# etcdctl 3.4.23 has no `auth status`: it prints the `auth` help and exits 0
AUTH_STATUS_34 = """@@auth-status
NAME:
\tauth - Enable or disable authentication

USAGE:
\tetcdctl auth <enable or disable> [flags]
@@rc 0
"""


def test_the_3_5_row_knows_a_release_at_or_above_its_exit_floor():
    m = etcd_minors()[(3, 5)]
    assert m.latest_release >= m.exit_floor


def test_each_hop_says_why_the_path_needs_it():
    hops = etcd_upgrade_hops(V("3.4.23"), V("3.5.16"))
    assert [str(h) for h in hops] == ["3.4.45", "3.5.16"]
    assert hops[0].kind == "latest-patch"
    assert hops[0].why.startswith("the latest 3.4 patch, which etcd's upgrade policy requires before 3.5 (etcd-io/etcd tag v3.4.45")


def test_allow_older_patch_drops_only_the_latest_patch_first_hop():
    assert [str(v) for v in etcd_upgrade_path(V("3.4.23"), V("3.5.16"), allow_older_patch=True)] == ["3.5.16"]
    # a minor is never skipped, with or without the flag
    with pytest.raises(SafetyRefusal, match="skips etcd 3.5"):
        etcd_upgrade_path(V("3.4.23"), V("3.6.14"), allow_older_patch=True)


def test_allow_older_patch_never_lowers_the_3_5_floor_for_3_6():
    with pytest.raises(SafetyRefusal, match=re.escape("must run 3.5.32 or later before 3.6")):
        etcd_upgrade_hops(V("3.5.30"), V("3.6.14"), allow_older_patch=True)
    # from 3.5.32 on, the flag may go straight to 3.6
    assert [str(v) for v in etcd_upgrade_path(V("3.5.32"), V("3.6.14"), allow_older_patch=True)] == ["3.6.14"]


def test_a_patch_upgrade_is_one_hop_with_or_without_the_flag():
    for flag in (False, True):
        assert [str(v) for v in etcd_upgrade_path(V("3.5.16"), V("3.5.30"), allow_older_patch=flag)] == ["3.5.30"]


def test_members_on_one_version_start_a_fresh_path():
    d = decide({"etcd-1": "3.4.23", "etcd-2": "3.4.23", "etcd-3": "3.4.23"}, V("3.5.16"), allow_older_patch=True)
    assert (str(d.current), [str(h) for h in d.hops], d.continuing) == ("3.4.23", ["3.5.16"], False)
    assert "without 3.4.45" in d.warning and "--allow-older-patch" in d.warning


def test_members_left_on_two_adjacent_hops_continue_the_same_upgrade():
    d = decide({"etcd-1": "3.5.30", "etcd-2": "3.5.16", "etcd-3": "3.5.16"}, V("3.5.30"))
    assert d.continuing and str(d.current) == "3.5.16" and [str(h) for h in d.hops] == ["3.5.30"]
    d = decide({"etcd-1": "3.4.45", "etcd-2": "3.4.23", "etcd-3": "3.4.23"}, V("3.5.16"))
    assert d.continuing and [str(h) for h in d.hops] == ["3.4.45", "3.5.16"]
    # stopped inside the latest-patch hop of a 3.6 upgrade that started at the floor
    d = decide({"etcd-1": "3.5.33", "etcd-2": "3.5.32", "etcd-3": "3.5.32"}, V("3.6.14"))
    assert d.continuing and [str(h) for h in d.hops] == ["3.5.33", "3.6.14"]


def test_members_on_versions_that_are_not_one_hop_apart_are_refused_naming_who_runs_what():
    with pytest.raises(SafetyRefusal, match=re.escape("(3.5.16: etcd-2, etcd-3; 3.5.21: etcd-1), and 3.5.21 is not")):
        decide({"etcd-1": "3.5.21", "etcd-2": "3.5.16", "etcd-3": "3.5.16"}, V("3.5.30"))
    with pytest.raises(SafetyRefusal, match="3 different etcd versions"):
        decide({"etcd-1": "3.5.30", "etcd-2": "3.5.16", "etcd-3": "3.4.23"}, V("3.5.30"))


def test_a_run_interrupted_without_the_latest_patch_is_pointed_back_at_the_flag():
    with pytest.raises(SafetyRefusal) as err:
        decide({"etcd-1": "3.5.16", "etcd-2": "3.4.23", "etcd-3": "3.4.23"}, V("3.5.16"))
    assert "--allow-older-patch" in err.value.hint
    assert decide({"etcd-1": "3.5.16", "etcd-2": "3.4.23", "etcd-3": "3.4.23"}, V("3.5.16"),
                  allow_older_patch=True).continuing


def test_madison_output_gives_the_versions_every_etcd_package_is_offered_at():
    assert parse_offered(MADISON_MIRROR, PKGS) == {"3.4.23": "3.4.23-4+b4", "3.5.16": "3.5.16-4", "3.5.30": "3.5.30-2"}
    assert parse_offered(MADISON_BOOKWORM, PKGS) == {"3.4.23": "3.4.23-4+b4"}
    server_only = "\n".join(line for line in MADISON_MIRROR.splitlines() if "3.5.30" not in line or "server" in line)
    assert "3.5.30" not in parse_offered(server_only, PKGS)
    assert parse_offered("", PKGS) == {}
    assert parse_offered("etcd-server | 1:3.6.5-1 | http://x ./ Packages\netcd-client | 1:3.6.5-1 | http://x ./ Packages",
                         PKGS) == {"3.6.5": "1:3.6.5-1"}


def test_a_hop_the_source_lacks_is_refused_with_why_what_is_offered_and_the_ways_out():
    d = decide({"etcd-1": "3.4.23"}, V("3.5.16"))
    with pytest.raises(SafetyRefusal) as err:
        check_offered(d, parse_offered(MADISON_MIRROR, PKGS), "the mirror http://m", allow_older_patch=False)
    msg = str(err.value)
    assert "etcd 3.4.45 is not offered by the mirror http://m" in msg
    assert "the latest 3.4 patch, which etcd's upgrade policy requires before 3.5" in msg
    assert "the source offers 3.4.23, 3.5.16, 3.5.30" in msg
    assert "add etcd 3.4.45 to the mirror http://m" in err.value.hint and "--allow-older-patch" in err.value.hint
    assert err.value.exit_code == 7


def test_a_missing_target_is_refused_without_suggesting_the_flag():
    d = decide({"etcd-1": "3.4.23"}, V("3.5.16"), allow_older_patch=True)
    with pytest.raises(SafetyRefusal) as err:
        check_offered(d, parse_offered(MADISON_BOOKWORM, PKGS), "Debian", allow_older_patch=True)
    assert "etcd 3.5.16 is not offered" in str(err.value) and "--allow-older-patch" not in err.value.hint
    check_offered(d, parse_offered(MADISON_MIRROR, PKGS), "the mirror", allow_older_patch=True)  # all offered


def test_auth_status_of_etcdctl_3_5_is_read_directly():
    out = "@@auth-status\nAuthentication Status: true\nAuthRevision: 4\n@@rc 0\n@@user-list\nroot\n@@rc 0\n"
    assert parse_auth(out).enabled is True
    assert parse_auth(out.replace("true", "false")).enabled is False


def test_etcdctl_3_4_tells_auth_by_whether_user_list_is_refused():
    on = AUTH_STATUS_34 + "@@user-list\nError: etcdserver: permission denied\n@@rc 1\n"
    assert parse_auth(on).enabled is True
    anonymous = AUTH_STATUS_34 + "@@user-list\nError: etcdserver: user name is empty\n@@rc 1\n"
    assert parse_auth(anonymous).enabled is True
    assert parse_auth(AUTH_STATUS_34 + "@@user-list\n@@rc 0\n").enabled is False
    # users exist and the listing was allowed: auth is off, or this client is root; it cannot say
    assert parse_auth(AUTH_STATUS_34 + "@@user-list\nroot\n@@rc 0\n").enabled is None


def test_only_a_3_4_to_3_5_crossing_cares_about_auth():
    across = decide({"etcd-1": "3.4.23"}, V("3.5.16"), allow_older_patch=True)
    patch = decide({"etcd-1": "3.5.16"}, V("3.5.30"))
    assert crosses_34_to_35(across) and not crosses_34_to_35(patch)
    check_auth(patch, AuthState(True, "auth status: true"))  # not refused: no 3.4 -> 3.5 here
    check_auth(across, AuthState(False, "no users"))
    with pytest.raises(SafetyRefusal, match="auth is enabled"):
        check_auth(across, AuthState(True, "auth status: true"))
    with pytest.raises(SafetyRefusal, match="cannot tell whether etcd auth is enabled"):
        check_auth(across, AuthState(None, "users exist"))
