# make demo  — on a fresh Debian 12 / Ubuntu machine, as root: install what is needed, boot the lab
#              (systemd-nspawn machines on a private bridge) and run kubeforge against it.
# make test  — the README's test command (what .ci/run runs after installing packages).

SYSTEM_PYTHON ?= python3
# Debian's own python refuses pip installs into the system (PEP 668): use a venv beside the checkout
EXTERNALLY_MANAGED := $(shell $(SYSTEM_PYTHON) -c 'import os, sysconfig; print(int(os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))' 2>/dev/null)
PYTHON      ?= $(if $(filter 1,$(EXTERNALLY_MANAGED)),$(CURDIR)/.venv/bin/python,$(SYSTEM_PYTHON))
KUBEFORGE   := $(PYTHON) -m kubeforge
LAB_INDEX   ?= 0
LAB         := $(PYTHON) -m tests.lab --index $(LAB_INDEX)
LAB_ROLES   ?=
INVENTORY   := /run/kubeforge-lab/lab$(LAB_INDEX)/inventory.yaml
UPGRADE_TO  ?= 1.34.2
APT_PACKAGES := openssh-client openssh-server mmdebstrap systemd-container iproute2 dpkg-dev util-linux \
                etcd-client ca-certificates curl gzip python3-pip python3-venv

.PHONY: demo deps install lab-up lab-down lab-status test test-unit clean-lab

demo: deps install lab-up
	@echo "== kubeforge against the lab: $(INVENTORY)"
	@echo "   (simulated there: kubeadm/kubelet/kubectl and upstream repos only; SSH, systemd, apt, etcd, TLS are real)"
	$(KUBEFORGE) validate -i $(INVENTORY)
	$(KUBEFORGE) render -i $(INVENTORY) -d /run/kubeforge-lab/lab$(LAB_INDEX)/rendered
	$(KUBEFORGE) facts -i $(INVENTORY)
	$(KUBEFORGE) preflight -i $(INVENTORY)
	$(KUBEFORGE) up -i $(INVENTORY) -y
	$(KUBEFORGE) etcd backup -i $(INVENTORY)
	$(KUBEFORGE) etcd status -i $(INVENTORY)
	$(KUBEFORGE) upgrade -i $(INVENTORY) --to $(UPGRADE_TO) -y
	@echo "== lab still running: '$(LAB) ssh lab-1' to look around, 'make lab-down LAB_INDEX=$(LAB_INDEX)' to stop it"

deps:
	@[ "$$(id -u)" -eq 0 ] || { echo "make demo needs root (systemd-nspawn, bridges, mounts)"; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES)

install:
	$(if $(filter 1,$(EXTERNALLY_MANAGED)),[ -x .venv/bin/python ] || $(SYSTEM_PYTHON) -m venv .venv,@true)
	$(PYTHON) -m pip install -q -e '.[test]'

lab-up:
	$(LAB) up $(if $(LAB_ROLES),--roles $(LAB_ROLES),)

lab-down:
	$(LAB) down

lab-status:
	$(LAB) status

clean-lab:
	$(LAB) down --all

test:
	$(PYTHON) -m pytest -q -n 2 --dist loadgroup

test-unit:
	$(PYTHON) -m pytest -q -m "not lab"
