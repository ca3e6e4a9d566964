"""etcd backups on the operator's machine: snapshot files, manifests and retention, the stored
(encrypted) file and the verified read. Library code below the workflows (level of pki)."""
