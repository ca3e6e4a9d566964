"""etcd lifecycle: install, status, backup, restore, membership, minor upgrades."""
