"""/etc/kubeforge/applied.json: what kubeforge placed on a host, so a later run (and an operator)
can tell which files it owns and whether they drifted. Deterministic: sorted keys, no timestamps."""

from __future__ import annotations

import json
from collections.abc import Sequence

from kubeforge.model import Host, RenderedFile
from kubeforge.model.versions import Version
from kubeforge.render.context import KUBEFORGE_DIR

RECORD_PATH = f"{KUBEFORGE_DIR}/applied.json"


def render_record(cluster_name: str, version: Version, host: Host, files: Sequence[RenderedFile]) -> RenderedFile:
    record = {
        "cluster": cluster_name,
        "host": host.name,
        "kubernetesVersion": str(version),
        "roles": sorted(str(r) for r in host.roles),
        "files": {f.path: f.sha256 for f in files if f.path != RECORD_PATH},
    }
    content = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    return RenderedFile(RECORD_PATH, content, mode=0o644, source="kubeforge.render.record")
