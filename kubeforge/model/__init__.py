"""The frozen model every layer above reads: Cluster, Host, Role, versions, Secret, RenderedFile."""

from kubeforge.model.cluster import (  # noqa: F401
    BackupSettings,
    Bastion,
    Cluster,
    CniSpec,
    Endpoint,
    EndpointMode,
    EtcdSpec,
    EtcdTopology,
    Host,
    HostKeyPolicy,
    ImageSettings,
    KubeletSettings,
    Network,
    PackageSource,
    PackageSourceKind,
    PkiSettings,
    RegistryCredential,
    Role,
    SshSettings,
    Taint,
    UpgradePolicy,
)
from kubeforge.model.files import RenderedFile  # noqa: F401
from kubeforge.model.secret import Secret  # noqa: F401
from kubeforge.model.versions import EtcdVersion, KubeVersion, Version  # noqa: F401
