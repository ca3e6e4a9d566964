"""Pure renderers: a Cluster (plus injected secrets and PKI files) becomes the files of each host.

No clock, randomness or I/O in here except reading the templates; the same inputs give the same
bytes. ``write_tree`` (kubeforge.render.tree) is the one helper that writes, for ``kubeforge render``.
"""

from kubeforge.render.context import ClusterSecretsLike  # noqa: F401
from kubeforge.render.host import DuplicateFileError, render_cluster, render_host  # noqa: F401
