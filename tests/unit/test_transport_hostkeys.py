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
    assert f"ssh-keyscan -p 2200 10.77.4.20 >> {kh}" in str(info.value)
    assert "accept-new" in str(info.value) and "hostKey: \"ecdsa-sha2-nistp256 " in str(info.value)
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


def test_an_rsa_key_in_known_hosts_asks_the_server_for_its_sha2_algorithms_first(tmp_path):
    rsa = paramiko.RSAKey.generate(2048)
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.77.4.26", rsa))
    assert HostKeyCheck("x", "10.77.4.26", 22, kh).preferred_key_types() == ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]


def test_every_key_type_a_host_has_is_trusted_not_only_the_first(tmp_path):
    ecdsa, ed = _key(), paramiko.Ed25519Key(data=bytes(_ed25519_pub()))
    kh = tmp_path / "known_hosts"
    kh.write_text(_line("10.77.4.27", ecdsa) + _line("10.77.4.27", ed))
    HostKeyCheck("x", "10.77.4.27", 22, kh).verify(ed)
    HostKeyCheck("x", "10.77.4.27", 22, kh).verify(ecdsa)


def _ed25519_pub() -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    m = paramiko.Message()
    m.add_string("ssh-ed25519")
    m.add_string(raw)
    return m.asbytes()


def test_wildcards_negations_and_hashed_names_match_as_in_openssh(tmp_path):
    from kubeforge.transport.known_hosts import patterns_match

    assert patterns_match("10.77.4.*,!10.77.4.9", "10.77.4.8")
    assert not patterns_match("10.77.4.*,!10.77.4.9", "10.77.4.9")
    assert patterns_match("[10.0.0.?]:2222", "[10.0.0.5]:2222")
    assert not patterns_match("[10.0.0.?]:2222", "10.0.0.5")
    assert patterns_match(paramiko.HostKeys.hash_host("[cp-1]:2200"), "[cp-1]:2200")
    assert not patterns_match(paramiko.HostKeys.hash_host("cp-1"), "cp-2")
    assert not patterns_match("|1|bad|base64!", "cp-1")


def test_a_malformed_line_is_skipped_with_one_warning_naming_file_and_line(tmp_path, caplog):
    key = _key()
    kh = tmp_path / "known_hosts"
    kh.write_text("# comment\n10.77.4.28 ssh-ed25519 AAAA!!notbase64\n@bogus 10.77.4.28 x y\nonly-two fields\n"
                  + _line("10.77.4.28", key))
    for _ in range(3):
        HostKeyCheck("x", "10.77.4.28", 22, kh).verify(key)
    for line in (2, 3, 4):
        assert caplog.text.count(f"{kh}:{line}: line skipped") == 1


def test_a_revoked_key_is_refused_even_when_also_listed_as_known(tmp_path):
    key = _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@revoked * {key.get_name()} {key.get_base64()}\n" + _line("10.77.4.29", key))
    with pytest.raises(HostKeyError, match="@revoked") as info:
        HostKeyCheck("x", "10.77.4.29", 22, kh, policy=HostKeyPolicy.ACCEPT_NEW).verify(key)
    assert info.value.exit_code == 5


def test_a_host_listing_only_a_cert_authority_asks_for_certificates_first(tmp_path):
    ca = _key()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"@cert-authority *.lab {ca.get_name()} {ca.get_base64()}\n")
    types = HostKeyCheck("x", "cp-1.lab", 22, kh).preferred_key_types()
    assert types[0] == "ssh-ed25519-cert-v01@openssh.com" and all(t.endswith("-cert-v01@openssh.com") for t in types)
    assert HostKeyCheck("x", "cp-1.other", 22, kh).preferred_key_types() == []
