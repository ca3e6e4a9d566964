"""The etcd phases: install, rolling restart, restore, membership changes, minor upgrades.

Phases are pure: they read the model, the rendered files and the read-only member facts
(``probe.py``) and return PhasePlans. The workflows in kubeforge.workflows.etcd gather the facts,
build the plans and run them.
"""
