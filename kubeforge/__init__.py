"""kubeforge: declarative Kubernetes provisioning for on-prem and bare-metal fleets."""

__version__ = "0.1.0"
