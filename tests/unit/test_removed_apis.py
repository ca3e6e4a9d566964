"""The removed-API scan: the data file, the probe's parser on recorded outputs (tests/fixtures/facts/
removed_apis, recorded from the simulator's kubectl), and the refusal / warning before each minor hop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kubeforge.errors import SafetyRefusal
from kubeforge.facts.removed_apis import (
    RemovedAPIScan,
    StoredObject,
    parse_removed_apis_scan,
    removed_apis_probe,
)
from kubeforge.facts.upgrade import NodeMachine
from kubeforge.model.removed_apis import (
    RemovedAPIDataError,
    parse_removed_apis,
    removed_apis,
    removed_between,
)
from kubeforge.model.versions import parse_kube
from kubeforge.plan.upgrade import plan_path
from kubeforge.plan.upgrade.check_removed_apis import CheckRemovedAPIs, check_removed_apis
from kubeforge.plan.upgrade.context import UpgradeContext
from kubeforge.plan.upgrade.state import UpgradeFacts
from tests.unit.test_upgrade_planner import cluster as ha_cluster
from tests.unit.test_upgrade_planner import facts_at as ha_facts
from tests.unit.test_upgrade_planner import noop_backup

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts" / "removed_apis"
HOP_135 = removed_between((1, 34), (1, 35))
HOP_137 = removed_between((1, 36), (1, 37))


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


# --- data ------------------------------------------------------------------------------------------

def test_every_entry_of_the_data_names_its_source_and_a_supported_minor():
    entries = removed_apis()
    assert entries and all(a.source and a.use for a in entries)
    assert {a.removed_in for a in entries} <= {(1, m) for m in range(32, 38)}


def test_the_data_has_the_removals_the_issue_and_the_migration_guide_name():
    by_minor = {(a.removed_in, a.group_version) for a in removed_apis()}
    assert ((1, 32), "flowcontrol.apiserver.k8s.io/v1beta3") in by_minor
    assert ((1, 37), "scheduling.k8s.io/v1alpha2") in by_minor
    assert ((1, 37), "kubeadm.k8s.io/v1beta3") in by_minor
    assert next(a for a in removed_apis() if a.group_version == "kubeadm.k8s.io/v1beta3").kubeadm


def test_a_hop_is_checked_against_the_minors_after_the_current_one_up_to_the_target():
    assert {a.removed_in for a in HOP_135} == {(1, 35)}
    assert {a.removed_in for a in removed_between((1, 33), (1, 35))} == {(1, 34), (1, 35)}
    assert removed_between((1, 35), (1, 35)) == []  # a patch upgrade stops serving nothing


@pytest.mark.parametrize("doc, what", [
    ({}, "no removedAPIs"),
    ({"removedAPIs": {"1.x": [{"groupVersion": "a/v1", "resources": ["r"], "source": "s"}]}}, "not a minor"),
    ({"removedAPIs": {"1.35": [{"groupVersion": "a/v1", "resources": ["r"]}]}}, "needs groupVersion"),
    ({"removedAPIs": {"1.35": [{"groupVersion": "a/v1", "source": "s"}]}}, "needs resources"),
])
def test_malformed_data_is_refused_with_where_and_what(doc, what):
    with pytest.raises(RemovedAPIDataError, match=what):
        parse_removed_apis(doc)


# --- the probe -------------------------------------------------------------------------------------

def test_the_probe_lists_each_touched_resource_by_its_group_and_reads_nothing_else():
    cmd = removed_apis_probe(HOP_135)
    assert "get storageversionmigrations.storagemigration.k8s.io -A -o json" in cmd.script
    assert "get customresourcedefinitions.apiextensions.k8s.io -o json" in cmd.script
    assert "kubeadm-config" not in cmd.script  # no kubeadm API leaves in 1.35
    for verb in (" apply ", " delete ", " patch ", " edit ", " replace "):
        assert verb not in cmd.script
    assert "kubeadm-config" in removed_apis_probe(HOP_137).script


# --- the parser ------------------------------------------------------------------------------------

def test_a_cluster_with_nothing_in_removed_versions_gives_an_empty_complete_scan():
    scan = parse_removed_apis_scan(fixture("none.txt"), HOP_135, host="cp-1")
    assert scan.objects == () and scan.problems == ()


def test_objects_written_in_a_removed_version_are_named_with_how_they_were_found():
    scan = parse_removed_apis_scan(fixture("some.txt"), HOP_135, host="cp-1")
    by_name = {o.name: o for o in scan.objects}
    svm = by_name["migrate-flowschemas"]
    assert (svm.kind, svm.api_version) == ("StorageVersionMigration", "storagemigration.k8s.io/v1alpha1")
    assert "managedFields: manager kubectl-client-side-apply, Update" in svm.found_by
    assert "last-applied-configuration" in svm.found_by
    assert "serves it only in this version" in svm.found_by
    gold = by_name["gold"]
    # served back in storage.k8s.io/v1, but written in v1alpha1: found by its writers, not its version
    assert gold.api_version == "storage.k8s.io/v1alpha1" and "serves it only" not in gold.found_by
    assert "silver" not in by_name  # written in v1beta1, which 1.35 still serves
    crd = by_name["widgets.example.com"]
    assert crd.kind == "CustomResourceDefinition" and crd.api_version == "example.com/v1alpha1"
    assert "no longer defines" in crd.found_by
    assert scan.problems == ()


def test_a_kubeadm_config_in_a_removed_config_api_is_found_in_the_configmap_and_in_files():
    scan = parse_removed_apis_scan(fixture("kubeadm.txt"), HOP_137, host="cp-1")
    found = {(o.kind, o.ref, o.api_version) for o in scan.objects}
    assert ("ConfigMap", "kube-system/kubeadm-config", "kubeadm.k8s.io/v1beta3") in found
    assert ("kubeadm config file", "cp-1//etc/kubernetes/kubeadm-old.yaml", "kubeadm.k8s.io/v1beta3") in found


def test_sections_kubectl_could_not_read_make_the_scan_incomplete_each_named():
    scan = parse_removed_apis_scan(fixture("failed.txt"), HOP_135, host="cp-1")
    assert scan.objects == ()
    assert len(scan.problems) == 3
    assert "storageversionmigrations" in scan.problems[0] and "was refused" in scan.problems[0]
    assert "unreadable output" in scan.problems[1]
    assert "admin.conf" in scan.problems[2]


def test_output_that_is_not_the_probes_is_refused():
    with pytest.raises(ValueError, match="no scan sections"):
        parse_removed_apis_scan(fixture("garbage.txt"), HOP_135, host="cp-1")


# --- the check before each hop ---------------------------------------------------------------------

def facts_at(version: str, scan: RemovedAPIScan | None) -> UpgradeFacts:
    v = parse_kube(version)
    return UpgradeFacts(machines={"cp-1": NodeMachine("cp-1", {"kubeadm": v}, apiserver=v)}, removed_apis=scan)


SVM = StoredObject("StorageVersionMigration", "", "migrate-flowschemas", "storagemigration.k8s.io/v1alpha1",
                   "managedFields: manager kubectl-client-side-apply, Update")


def test_a_hop_into_a_minor_that_stops_serving_a_used_version_is_refused_naming_the_object():
    facts = facts_at("1.34.2", RemovedAPIScan((SVM,), (), tuple(HOP_135)))
    with pytest.raises(SafetyRefusal) as exc:
        check_removed_apis(facts, [parse_kube("1.35.1")], allow=False)
    assert exc.value.exit_code == 7
    assert "1.34 -> 1.35 stops serving" in exc.value.message
    assert "StorageVersionMigration migrate-flowschemas in storagemigration.k8s.io/v1alpha1" in exc.value.message
    assert "--allow-removed-apis" in exc.value.hint and "Nothing was changed" in exc.value.hint


def test_an_incomplete_scan_refuses_too_unless_allowed():
    facts = facts_at("1.34.2", RemovedAPIScan((), ("kubectl get crds on cp-1 exited 1: refused",), ()))
    with pytest.raises(SafetyRefusal, match="scan is incomplete"):
        check_removed_apis(facts, [parse_kube("1.35.1")], allow=False)
    check_removed_apis(facts, [parse_kube("1.35.1")], allow=True)


def test_an_object_in_a_version_removed_before_the_current_minor_does_not_block_the_hop():
    old = StoredObject("FlowSchema", "", "legacy", "flowcontrol.apiserver.k8s.io/v1beta3", "annotation")
    check_removed_apis(facts_at("1.34.2", RemovedAPIScan((old,), (), ())), [parse_kube("1.35.1")], allow=False)


def test_with_the_flag_the_hop_goes_on_and_its_plan_starts_with_a_warning_naming_the_object(tmp_path):
    facts = facts_at("1.34.2", RemovedAPIScan((SVM,), (), tuple(HOP_135)))
    check_removed_apis(facts, [parse_kube("1.35.1")], allow=True)
    phase = CheckRemovedAPIs().plan(UpgradeContext(None, facts, parse_kube("1.35.1")))  # type: ignore[arg-type]
    assert not phase.is_noop
    (step,) = phase.lanes[0].steps
    assert "--allow-removed-apis" in step.title and "migrate-flowschemas" in step.title


def test_a_hop_with_nothing_found_shows_why_the_check_has_nothing_to_do():
    ctx = UpgradeContext(None, facts_at("1.34.2", RemovedAPIScan()), parse_kube("1.35.1"))  # type: ignore[arg-type]
    assert CheckRemovedAPIs().plan(ctx).reason == "no object is written in an API version it stops serving"
    ctx = UpgradeContext(None, facts_at("1.34.1", None), parse_kube("1.34.2"))  # type: ignore[arg-type]
    assert CheckRemovedAPIs().plan(ctx).reason == "not a minor hop"


def test_a_multi_hop_plan_puts_the_warning_before_the_hop_it_concerns_and_only_there():
    c = ha_cluster()
    facts = replace(ha_facts(c, parse_kube("1.34.2")), removed_apis=RemovedAPIScan((SVM,), (), tuple(HOP_135)))
    plan = plan_path(c, facts, [parse_kube("1.35.1")], parse_kube("1.35.1"), backup=noop_backup)
    assert [p.name for p in plan.phases][:2] == ["CheckRemovedAPIs", "BackupEtcd"]
    clean = replace(facts, removed_apis=RemovedAPIScan())
    plan = plan_path(c, clean, [parse_kube("1.35.1")], parse_kube("1.35.1"), backup=noop_backup)
    assert "CheckRemovedAPIs" not in [p.name for p in plan.phases]
