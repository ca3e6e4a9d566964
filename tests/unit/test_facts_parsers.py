"""Every fact parser against recorded outputs: installed, missing and garbage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubeforge.facts import parse_network, parse_software, parse_system
from kubeforge.facts.types import ModuleState

FIXTURES = Path(__file__).parent.parent / "fixtures" / "facts"


def fx(fact: str, name: str) -> str:
    return (FIXTURES / fact / f"{name}.txt").read_text()


# --- os ---------------------------------------------------------------------------------------
def test_os_release_of_debian_12_gives_id_version_and_family():
    info = parse_system.parse_os_release(fx("os", "debian12"))
    assert (info.id, info.version_id, info.family, info.codename) == ("debian", "12", "debian", "bookworm")
    assert info.problem is None


def test_os_release_of_ubuntu_is_in_the_debian_family():
    info = parse_system.parse_os_release(fx("os", "ubuntu2404"))
    assert (info.id, info.version_id, info.family, info.codename) == ("ubuntu", "24.04", "debian", "noble")


def test_os_release_of_rocky_is_in_the_rhel_family_with_quotes_removed():
    info = parse_system.parse_os_release(fx("os", "rocky9"))
    assert (info.id, info.version_id, info.family) == ("rocky", "9.4", "rhel")


def test_missing_os_release_says_so_instead_of_raising():
    info = parse_system.parse_os_release(fx("os", "missing"))
    assert info.id is None and info.family is None
    assert "missing" in info.problem


def test_garbage_os_release_leaves_fields_unknown_and_notes_the_problem():
    info = parse_system.parse_os_release(fx("os", "garbage"))
    assert info.id is None
    assert "ID=" in info.problem


# --- scalars ----------------------------------------------------------------------------------
def test_single_line_facts_take_the_first_non_empty_line():
    assert parse_system.parse_line("\n6.1.0-28-amd64\n") == "6.1.0-28-amd64"
    assert parse_system.parse_line("") is None
    assert parse_system.parse_line("cat: /proc/sys/kernel/hostname: No such file") is None


def test_cpu_count_accepts_only_a_positive_integer():
    assert parse_system.parse_cpus("2\n") == 2
    assert parse_system.parse_cpus("0\n") is None
    assert parse_system.parse_cpus("two") is None


def test_product_uuid_is_normalised_to_lower_case():
    assert parse_system.parse_product_uuid(fx("product_uuid", "present")) == "4c4c4544-0042-3510-8048-b4c04f4d3732"


@pytest.mark.parametrize("name", ["missing", "garbage"])
def test_product_uuid_that_is_absent_or_not_a_uuid_is_none(name):
    assert parse_system.parse_product_uuid(fx("product_uuid", name)) is None


def test_time_is_epoch_with_sub_second_precision_and_an_offset_interval():
    sample = parse_system.parse_time(fx("time", "runner"), 1795331932.0, 1795331933.0)
    assert sample.remote is not None and sample.remote != int(sample.remote)
    lo, hi = sample.offset_interval
    assert lo == pytest.approx(sample.remote - 1795331933.0)
    assert hi == pytest.approx(sample.remote - 1795331932.0)


def test_time_garbage_has_no_interval_and_a_problem():
    sample = parse_system.parse_time(fx("time", "garbage"), 1.0, 2.0)
    assert sample.offset_interval is None and "epoch" in sample.problem


# --- memory, disks, swap ------------------------------------------------------------------------
def test_meminfo_gives_total_and_available_in_bytes():
    mem = parse_system.parse_meminfo(fx("memory", "runner"))
    assert mem.total_bytes == 24683656 * 1024
    assert mem.available_bytes == 24274848 * 1024


def test_meminfo_garbage_is_unknown_with_a_problem():
    mem = parse_system.parse_meminfo(fx("memory", "garbage"))
    assert mem.total_bytes is None and "MemTotal" in mem.problem


def test_disks_report_size_and_free_space_per_asked_path():
    disks = parse_system.parse_disks(fx("disks", "runner"))
    root = disks.for_path("/")
    assert root.mount == "/" and root.size_bytes == 264212084 * 1024 and root.available_bytes == 83307048 * 1024
    assert disks.for_path("/var/lib/etcd") is not None
    assert disks.problem is None


def test_disks_of_a_missing_etcd_dir_are_those_of_its_nearest_existing_parent():
    usage = parse_system.parse_disks(fx("disks", "etcd-missing-dir")).for_path("/var/lib/etcd")
    assert usage.probed == "/var/lib" and usage.mount == "/var/lib"


def test_disks_garbage_keeps_the_path_with_unknown_sizes():
    disks = parse_system.parse_disks(fx("disks", "garbage"))
    assert disks.for_path("/").size_bytes is None
    assert "unreadable df output" in disks.problem


def test_swap_off_is_known_and_disabled():
    swap = parse_system.parse_swaps(fx("swap", "off"))
    assert swap.known and swap.enabled is False


def test_swap_on_lists_every_device_with_sizes():
    swap = parse_system.parse_swaps(fx("swap", "on"))
    assert swap.enabled is True
    assert [(d.name, d.type, d.size_kib) for d in swap.devices] == [
        ("/swapfile", "file", 2097148),
        ("/dev/dm-1", "partition", 1003516),
    ]


@pytest.mark.parametrize("name", ["missing", "garbage"])
def test_swap_unreadable_is_unknown_not_off(name):
    swap = parse_system.parse_swaps(fx("swap", name))
    assert swap.enabled is None and swap.problem


# --- kernel modules and sysctls -----------------------------------------------------------------
def test_modules_loaded_from_proc_modules_count_as_loaded():
    mods = parse_system.parse_modules(fx("modules", "loaded"), fx("modules_wanted", "missing"))
    assert mods.state("br_netfilter") is ModuleState.LOADED
    assert "nf_conntrack" in mods.loaded


def test_a_module_neither_loaded_nor_on_disk_is_absent():
    mods = parse_system.parse_modules(fx("modules", "runner-empty"), fx("modules_wanted", "missing"))
    assert mods.state("br_netfilter") is ModuleState.ABSENT
    assert mods.state("overlay") is ModuleState.LOADED


def test_a_module_on_disk_but_not_loaded_is_loadable():
    mods = parse_system.parse_modules("", fx("modules_wanted", "loadable"))
    assert mods.state("br_netfilter") is ModuleState.LOADABLE


def test_built_in_modules_recorded_on_the_runner_are_loaded():
    mods = parse_system.parse_modules(fx("modules", "runner-empty"), fx("modules_wanted", "loaded"))
    assert mods.state("overlay") is ModuleState.LOADED and mods.state("br_netfilter") is ModuleState.LOADED


def test_module_garbage_is_unknown_with_a_problem():
    mods = parse_system.parse_modules(fx("modules", "garbage"), fx("modules_wanted", "garbage"))
    assert mods.state("overlay") is ModuleState.UNKNOWN
    assert mods.problem


def test_sysctls_are_read_as_strings_and_missing_keys_as_none():
    values = parse_system.parse_sysctls(fx("sysctls", "missing")).values
    assert values["net.bridge.bridge-nf-call-iptables"] is None
    assert values["net.ipv4.ip_forward"] == "0"
    assert parse_system.parse_sysctls(fx("sysctls", "set")).values["net.ipv4.ip_forward"] == "1"


def test_sysctl_garbage_notes_the_problem():
    assert "unreadable sysctl line" in parse_system.parse_sysctls(fx("sysctls", "garbage")).problem


# --- MACs ---------------------------------------------------------------------------------------
def test_macs_skip_loopback_and_all_zero_addresses():
    macs = parse_system.parse_macs(fx("macs", "runner")).interfaces
    assert "lo" not in macs
    assert macs["eth0"] == "02:fc:00:00:00:01"


def test_macs_garbage_keeps_good_lines_lower_cased_and_skips_non_ethernet():
    macs = parse_system.parse_macs(fx("macs", "garbage"))
    assert macs.interfaces == {"veth1": "de:ad:be:ef:00:01"}
    assert macs.problem


# --- ports --------------------------------------------------------------------------------------
def test_ss_output_gives_address_port_and_process():
    ports = parse_network.parse_ports(fx("ports", "ss"))
    assert ports.source == "ss"
    assert [(x.address, x.process) for x in ports.on(18080)] == [("127.0.0.1", "python3")]
    assert [(x.address, x.process) for x in ports.on(18081)] == [("::1", "python3")]
    assert ports.on(53)[0].address == "127.0.0.53"
    assert ports.on(10250)[0].address == "0.0.0.0" and ports.on(10250)[0].process == "kubelet"
    assert ports.on(2024)[0].process is None


def test_proc_net_tcp_decodes_little_endian_addresses_and_keeps_only_listeners():
    ports = parse_network.parse_ports(fx("ports", "proc"))
    assert ports.source == "proc"
    assert {(x.address, x.port) for x in ports.listeners} == {
        ("0.0.0.0", 2024),
        ("127.0.0.1", 18080),
        ("::1", 18081),
    }


def test_ports_missing_is_a_problem_not_an_empty_list_of_listeners():
    ports = parse_network.parse_ports(fx("ports", "missing"))
    assert ports.source is None and ports.problem


def test_ports_garbage_ignores_bad_lines_and_says_so():
    ports = parse_network.parse_ports(fx("ports", "garbage"))
    assert ports.listeners == () and "unreadable ss line" in ports.problem


# --- software -----------------------------------------------------------------------------------
def test_installed_packages_count_only_installed_status_and_report_upstream_versions():
    pk = parse_software.parse_packages(fx("packages", "installed"), fx("binaries", "installed"))
    assert pk.packages["kubeadm"] == "1.34.2-1.1"
    assert "haproxy" not in pk.packages  # rc: removed, config left behind
    assert pk.version_of("kubeadm") == "1.34.2"
    assert pk.version_of("etcd") == "3.4.23"
    assert pk.version_of("containerd") == "1.6.20"
    assert pk.binaries == {
        "kubeadm": "1.34.2",
        "kubelet": "1.34.2",
        "kubectl": "1.34.2",
        "containerd": "1.6.20",
        "etcd": "3.4.23",
    }


def test_no_packages_installed_gives_no_versions():
    pk = parse_software.parse_packages(fx("packages", "missing"), "")
    assert pk.version_of("kubelet") is None and pk.problem is None


def test_package_garbage_keeps_what_parsed_and_notes_the_rest():
    pk = parse_software.parse_packages(fx("packages", "garbage"), fx("binaries", "garbage"))
    assert pk.packages == {} and pk.binaries == {}
    assert pk.problem


def test_an_epoch_in_a_debian_version_is_not_part_of_the_upstream_version():
    pk = parse_software.parse_packages(fx("packages", "runner"), fx("binaries", "runner"))
    assert pk.version_of("kubectl") == "528.0.0"
    assert pk.binaries["kubectl"] == "1.32.4"


def test_units_report_active_and_enabled_state_and_missing_units():
    units = parse_software.parse_units(fx("units", "installed"))
    assert units.is_active("kubelet") and units.states["kubelet"].enabled == "enabled"
    assert units.states["etcd"].active == "failed" and not units.is_active("etcd")
    assert units.states["haproxy"].exists is False and units.states["haproxy"].enabled is None


def test_units_absent_on_a_fresh_host_exist_nowhere():
    units = parse_software.parse_units(fx("units", "missing"))
    assert all(not s.exists for s in units.states.values())
    assert set(units.states) == {"kubelet", "containerd", "etcd"}


def test_units_without_systemd_are_unknown_with_the_reason():
    units = parse_software.parse_units(fx("units", "no-systemd"))
    assert units.states == {} and "not been booted with systemd" in units.problem


def test_held_packages_are_listed_and_garbage_is_noted():
    assert parse_software.parse_held(fx("held", "installed")).packages == {"kubeadm", "kubelet", "kubectl"}
    assert parse_software.parse_held(fx("held", "missing")).packages == frozenset()
    assert parse_software.parse_held(fx("held", "garbage")).problem


def test_applied_record_is_parsed_when_present_and_none_when_absent():
    assert parse_software.parse_applied(fx("applied", "present")).record["cluster"] == "prod-ha"
    absent = parse_software.parse_applied(fx("applied", "absent"))
    assert absent.record is None and absent.problem is None and not absent.present


def test_applied_files_on_the_host_show_an_edited_file_and_a_removed_one_and_nothing_unread_counts_as_edited():
    record = {"cluster": "lab", "files": {
        "/tmp/kfrec/etc/containerd/config.toml": "69d0044d65bc72753132efe821effd54c8072b5f75703772caa15a13d400dc5a",
        "/tmp/kfrec/etc/crictl.yaml": "af76d2c716878de610bc4de9aaf55cc7cc6b4f922e7d83c53e695c2abf044a34",
        "/tmp/kfrec/etc/kubeforge/kubeadm-join.yaml": "1" * 64}}
    applied = parse_software.parse_applied(json.dumps(record), fx("applied_files", "edited"))
    assert applied.edited_files() == ("/tmp/kfrec/etc/containerd/config.toml", "/tmp/kfrec/etc/kubeforge/kubeadm-join.yaml")
    assert applied.on_host["/tmp/kfrec/etc/kubeforge/kubeadm-join.yaml"] is None
    odd = parse_software.parse_applied(json.dumps({"files": {"/etc/crictl.yaml": "0" * 64, "/etc/kubeforge/kubeadm-join.yaml": "1" * 64}}),
                                       fx("applied_files", "garbage"))
    assert odd.edited_files() == ("/etc/crictl.yaml",)  # the unreadable one is not known, so not edited
    # an older facts script (no section) or no record: nothing is known of the host's copies
    assert parse_software.parse_applied(json.dumps(record)).on_host is None
    assert parse_software.parse_applied(json.dumps(record)).edited_files() == ()


def test_applied_garbage_is_not_present_and_names_the_file():
    applied = parse_software.parse_applied(fx("applied", "garbage"))
    assert not applied.present and "applied.json is not JSON" in applied.problem


def test_membership_sees_kubelet_conf_and_etcd_data():
    joined = parse_software.parse_membership(fx("membership", "joined"))
    assert joined.kubelet_conf and joined.etcd_data
    fresh = parse_software.parse_membership(fx("membership", "fresh"))
    assert not fresh.kubelet_conf and not fresh.etcd_data and fresh.problem is None
    assert parse_software.parse_membership(fx("membership", "garbage")).problem
    assert joined.kubeforge_files and joined.etcd_stamp
    interrupted = parse_software.parse_membership(fx("membership", "interrupted"))
    assert interrupted.etcd_stamp and not interrupted.kubelet_conf


# --- dns (the resolv.conf the kubelet gives CoreDNS) ------------------------------------------------
def test_dns_gives_the_resolv_conf_and_its_name_servers():
    dns = parse_system.parse_dns(fx("dns", "resolved"))
    assert (dns.path, dns.nameservers, dns.problem) == ("/run/systemd/resolve/resolv.conf", ("192.0.2.53", "2001:db8::53"), None)
    assert parse_system.parse_dns(fx("dns", "nameserver")).nameservers == ("10.255.255.53",)


def test_dns_of_a_host_without_a_name_server_is_known_and_empty():
    dns = parse_system.parse_dns(fx("dns", "none"))
    assert (dns.path, dns.nameservers, dns.problem) == ("/etc/resolv.conf", (), None)


def test_dns_garbage_is_a_problem_and_an_absent_section_is_simply_unknown():
    assert "unreadable" in parse_system.parse_dns(fx("dns", "garbage")).problem
    assert parse_system.parse_dns("") == parse_system.parse_dns("\n")
    assert parse_system.parse_dns("").path is None and parse_system.parse_dns("").problem is None
