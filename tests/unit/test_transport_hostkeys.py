"""Host key decisions with real keys and real known_hosts files (no SSH server needed)."""

from __future__ import annotations

import paramiko
import pytest

from kubeforge.errors import HostKeyError
from kubeforge.model import HostKeyPolicy
from kubeforge.transport.hostkeys import HostKeyCheck, fingerprint, parse_pinned


def _key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def _line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def test_fingerprint_matches_openssh_format():
    key = _key()
    fp = fingerprint(key)
    assert fp.startswith("SHA256:") and not fp.endswith("=") and len(fp) == 7 + 43


def test_a_known_key_on_a_non_default_port_is_accepted(tmp_path):
    key = _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("[10.77.4.11]:2222", key))
    HostKeyCheck("cp-1", "10.77.4.11", 2222, kh).verify(key)


def test_a_hashed_known_hosts_entry_is_accepted(tmp_path):
    key = _key()
    hashed = paramiko.HostKeys.hash_host("10.77.4.12")
    kh = tmp_path / "known_hosts"
    kh.write_text(_line(hashed, key))
    HostKeyCheck("cp-2", "10.77.4.12", 22, kh).verify(key)


def test_an_unknown_key_is_refused_with_how_to_add_it(tmp_path):
    key = _key()
    kh = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError) as info:
        HostKeyCheck("w-1", "10.77.4.20", 2200, kh).verify(key)
    assert fingerprint(key) in str(info.value)
    assert f"ssh-keyscan -p 2200 10.77.4.20 >> {kh}" in info.value.hint
    assert "accept-new" in info.value.hint
    assert info.value.exit_code == 5


def test_a_changed_key_is_refused_with_both_fingerprints_even_under_accept_new(tmp_path):
    old, new = _key(), _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.77.4.21", old))
    with pytest.raises(HostKeyError) as info:
        HostKeyCheck("w-2", "10.77.4.21", 22, kh, policy=HostKeyPolicy.ACCEPT_NEW).verify(new)
    assert fingerprint(old) in str(info.value) and fingerprint(new) in str(info.value)
    assert "ssh-keygen -f" in info.value.hint and "-R '10.77.4.21'" in info.value.hint
    assert kh.read_text() == _line("10.77.4.21", old)


def test_accept_new_records_an_unknown_key_and_trusts_it_next_time(tmp_path, caplog):
    key = _key()
    kh = tmp_path / "ssh" / "known_hosts"
    check = HostKeyCheck("w-3", "10.77.4.22", 2022, kh, policy=HostKeyPolicy.ACCEPT_NEW)
    check.verify(key)
    assert kh.read_text() == _line("[10.77.4.22]:2022", key)
    assert fingerprint(key) in caplog.text
    HostKeyCheck("w-3", "10.77.4.22", 2022, kh).verify(key)


def test_a_pinned_key_wins_over_known_hosts(tmp_path):
    pinned, other = _key(), _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.77.4.23", other))
    pin = f"{pinned.get_name()} {pinned.get_base64()} root@cp"
    HostKeyCheck("cp-3", "10.77.4.23", 22, kh, pinned=pin).verify(pinned)
    with pytest.raises(HostKeyError) as info:
        HostKeyCheck("cp-3", "10.77.4.23", 22, kh, pinned=pin).verify(other)
    assert "the inventory pins" in str(info.value) and fingerprint(other) in str(info.value)


def test_preferred_key_types_come_from_what_is_already_trusted(tmp_path):
    key = _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.77.4.24", key))
    assert HostKeyCheck("x", "10.77.4.24", 22, kh).preferred_key_types() == ["ecdsa-sha2-nistp256"]
    assert HostKeyCheck("x", "10.77.4.25", 22, kh).preferred_key_types() == []


def test_parse_pinned_rejects_text_that_is_not_a_key():
    with pytest.raises(ValueError):
        parse_pinned("ssh-ed25519")
    with pytest.raises(ValueError):
        parse_pinned("ssh-ed25519 bm90IGEga2V5")
