"""Planners of the `node` workflows: nodes leaving the cluster (remove)."""
